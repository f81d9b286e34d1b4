/**
 * OSTree peers of the delta benchmark: an object pull (archive-z2 objects of the target commit
 * that the base repo lacks) and a static delta (`ostree static-delta generate --from --to`).
 * Commits come from a tar of each tree without device nodes (OSTree refuses them; /dev is empty
 * on a real OSTree system too). Applying goes into a bare device repo holding the base commit,
 * then `ostree checkout`; the checkout is compared with the target tree.
 */
import { mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CACHE } from './delta-data.ts';
import { bytesNotIn, filesUnder, type DeltaRow } from './delta-result.ts';
import { haveTool, run, timeIt } from './lib.ts';

/** A tar of `tree` without device nodes, fifos or sockets; returns its path. */
async function treeTar(tree: string, out: string): Promise<string> {
  const { stdout } = await run('find', [
    tree,
    '-xdev',
    '(',
    '-type',
    'c',
    '-o',
    '-type',
    'b',
    '-o',
    '-type',
    'p',
    '-o',
    '-type',
    's',
    ')',
    '-printf',
    './%P\\n',
  ]);
  await writeFile(`${out}.exclude`, stdout);
  await run('tar', [
    '-C',
    tree,
    `--exclude-from=${out}.exclude`,
    '--numeric-owner',
    '-cf',
    out,
    '.',
  ]);
  return out;
}

async function commit(repo: string, branch: string, tar: string): Promise<string> {
  await run('ostree', ['commit', `--repo=${repo}`, `--branch=${branch}`, `--tree=tar=${tar}`]);
  return (await run('ostree', [`--repo=${repo}`, 'rev-parse', branch])).stdout.trim();
}

/** `ostree init` of a new repository in `mode` (archive, bare). */
export async function initOstreeRepo(repo: string, mode: string): Promise<void> {
  await mkdir(repo, { recursive: true });
  await run('ostree', ['init', `--repo=${repo}`, `--mode=${mode}`]);
}

/** Commits `tree` (through a tar at `tar`, without device nodes) to `branch`; returns the rev. */
export async function commitTree(
  repo: string,
  branch: string,
  tree: string,
  tar: string,
): Promise<string> {
  return commit(repo, branch, await treeTar(tree, tar));
}

/** Checks out `rev` into `out` and tells whether it equals the tree in `tar` (mtimes aside). */
export async function ostreeCheckoutSame(
  repo: string,
  rev: string,
  out: string,
  tar: string,
): Promise<boolean> {
  await checkout(repo, rev, out);
  return sameAsTar(tar, out);
}

/** Checks out `rev` from `repo` into `out` and compares it with the target tar's tree. */
async function checkout(repo: string, rev: string, out: string): Promise<void> {
  await run('ostree', ['checkout', `--repo=${repo}`, rev, out]);
}

async function sameAsTar(tar: string, tree: string): Promise<boolean> {
  // tar --compare reports any content, mode, owner or link difference; mtimes are OSTree's 0.
  const r = await run('sh', [
    '-c',
    'tar --compare -f "$1" -C "$2" 2>&1 | grep -v "Mod time differs" | head -5',
    'sh',
    tar,
    tree,
  ]);
  return r.stdout.trim() === '';
}

/** Both OSTree rows (object pull, static delta) for one pair. */
export async function ostreePeers(pair: string, base: string, target: string): Promise<DeltaRow[]> {
  if (!haveTool('ostree')) throw new Error('ostree is not installed (apt-get install ostree)');
  const work = join(CACHE, 'ostree', pair);
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  const baseTar = await treeTar(base, join(work, 'base.tar'));
  const targetTar = await treeTar(target, join(work, 'target.tar'));
  const [rb, rt] = [join(work, 'repo-base'), join(work, 'repo-target')];
  await initOstreeRepo(rb, 'archive');
  await initOstreeRepo(rt, 'archive');
  const baseRev = await commit(rb, 'base', baseTar);
  const made = await timeIt(() => commit(rt, 'target', targetTar));
  const targetRev = made.result;
  const pullBytes = bytesNotIn(
    await filesUnder(join(rb, 'objects')),
    await filesUnder(join(rt, 'objects')),
  );

  const device = async (name: string): Promise<string> => {
    const d = join(work, name);
    await initOstreeRepo(d, 'bare');
    await run('ostree', ['pull-local', `--repo=${d}`, rb, 'base']);
    return d;
  };
  const d1 = await device('device-pull');
  const pull = await timeIt(async () => {
    await run('ostree', ['pull-local', `--repo=${d1}`, rt, 'target']);
    await checkout(d1, targetRev, join(work, 'out-pull'));
  });
  const pullOk = await sameAsTar(targetTar, join(work, 'out-pull'));

  await run('ostree', ['pull-local', `--repo=${rt}`, rb, 'base']);
  const deltaDir = join(work, 'delta');
  const gen = await timeIt(() =>
    run('ostree', [
      'static-delta',
      'generate',
      `--repo=${rt}`,
      `--from=${baseRev}`,
      `--to=${targetRev}`,
      '--inline',
      // Everything in the delta file: big objects otherwise become HTTP fallback fetches,
      // which apply-offline refuses.
      '--min-fallback-size=4096',
      `--filename=${deltaDir}`,
    ]),
  );
  const deltaBytes = await sizeOf(deltaDir);
  const d2 = await device('device-delta');
  const apply = await timeIt(async () => {
    await run('ostree', ['static-delta', 'apply-offline', `--repo=${d2}`, deltaDir]);
    await checkout(d2, targetRev, join(work, 'out-delta'));
  });
  const deltaOk = await sameAsTar(targetTar, join(work, 'out-delta'));
  await rm(work, { recursive: true, force: true });
  return [
    {
      peer: 'OSTree object pull',
      pair,
      bytes: pullBytes,
      publishSeconds: made.seconds,
      applySeconds: pull.seconds,
      verified: pullOk,
      note: 'archive-z2 objects the base repo lacks; apply = pull-local + checkout',
    },
    {
      peer: 'OSTree static delta',
      pair,
      bytes: deltaBytes,
      publishSeconds: made.seconds + gen.seconds,
      applySeconds: apply.seconds,
      verified: deltaOk,
      note: 'exact base only; publish = commit + generate; apply = apply-offline + checkout',
    },
  ];
}

async function sizeOf(path: string): Promise<number> {
  const s = await stat(path);
  if (!s.isDirectory()) return s.size;
  let n = 0;
  for (const e of await readdir(path, { recursive: true, withFileTypes: true }))
    if (e.isFile()) n += (await stat(join(e.parentPath, e.name))).size;
  return n;
}
