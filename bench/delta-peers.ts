/**
 * The chunk-store and binary-diff peers of the delta benchmark, each run with its real tool on the
 * same images and trees as Ferry: casync (image and tree), zchunk, xdelta3. OSTree is in
 * delta-ostree.ts, the floor in delta-floor.ts. Every apply is checked against the target.
 */
import { link, mkdir, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { CACHE } from './delta-data.ts';
import { bytesNotIn, fileSha256, filesUnder, type DeltaRow } from './delta-result.ts';
import { haveTool, run, timeIt } from './lib.ts';
import { withNginx } from './delta-nginx.ts';

function need(tool: string): void {
  if (!haveTool(tool)) throw new Error(`${tool} is not installed (apt-get install it)`);
}

/** Hard-links the files of `src` named in `names` into `dst` (a store holding only those). */
async function linkSubset(src: string, dst: string, names: Iterable<string>): Promise<void> {
  for (const name of names) {
    await mkdir(dirname(join(dst, name)), { recursive: true });
    await link(join(src, name), join(dst, name));
  }
}

/**
 * casync on a file or a directory: `casync make` both, count the target's chunks the seed's store
 * lacks (plus the index), then `casync extract --seed` from a store holding only those chunks, so
 * the count is proven sufficient.
 */
export async function casyncPeer(
  kind: 'image' | 'tree',
  pair: string,
  base: string,
  target: string,
): Promise<DeltaRow> {
  need('casync');
  const work = join(CACHE, 'casync', `${kind}-${pair}`);
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  const ext = kind === 'image' ? 'caibx' : 'caidx';
  const idx = (n: string) => join(work, `${n}.${ext}`);
  await run('casync', ['make', `--store=${join(work, 'store-base')}`, idx('base'), base]);
  const make = await timeIt(() =>
    run('casync', ['make', `--store=${join(work, 'store-target')}`, idx('target'), target]),
  );
  const have = await filesUnder(join(work, 'store-base'));
  const want = await filesUnder(join(work, 'store-target'));
  const missing = [...want.keys()].filter((n) => !have.has(n));
  await linkSubset(join(work, 'store-target'), join(work, 'store-missing'), missing);
  const out = join(work, kind === 'image' ? 'out.img' : 'out');
  const store = `--store=${join(work, 'store-missing')}`;
  const apply = await timeIt(() =>
    run('casync', ['extract', store, `--seed=${base}`, idx('target'), out]),
  );
  let verified = false;
  let diff = '';
  if (kind === 'image') verified = (await fileSha256(out)) === (await fileSha256(target));
  else verified = (diff = await treeDiff(target, out)) === '';
  // catar has no hard links: linked files come back as equal separate copies.
  const links = diff.split('\n').filter((l) => l.startsWith('hf')).length;
  const why =
    diff && links === diff.split('\n').length ? `; ${links} hard links became copies` : '';
  const bytes = bytesNotIn(have, want) + (await stat(idx('target'))).size;
  await rm(work, { recursive: true, force: true });
  return {
    peer: `casync ${kind}`,
    pair,
    bytes,
    publishSeconds: make.seconds,
    applySeconds: apply.seconds,
    verified,
    note: `${missing.length}/${want.size} chunks + index${why || (diff ? `; differs: ${diff.slice(0, 120)}` : '')}`,
  };
}

/**
 * How two trees differ in entries, contents, links, modes, owners, devices, hard links, ACLs or
 * xattrs (rsync dry run with checksums; times are not compared): '' when they are the same.
 */
async function treeDiff(a: string, b: string): Promise<string> {
  const args = ['-rlpgoDcniHAX', '--numeric-ids', '--delete', `${a}/`, `${b}/`];
  return (await run('rsync', args)).stdout.trim();
}

/** zchunk: `zck` both images, `zck_delta_size`, then `zckdl --source` from nginx and `unzck`. */
export async function zchunkPeer(pair: string, base: string, target: string): Promise<DeltaRow> {
  for (const t of ['zck', 'zck_delta_size', 'zckdl', 'unzck']) need(t);
  const work = join(CACHE, 'zchunk', pair);
  await rm(work, { recursive: true, force: true });
  await mkdir(join(work, 'srv'), { recursive: true });
  await mkdir(join(work, 'dev'), { recursive: true });
  await run('zck', ['-o', join(work, 'dev', 'base.zck'), base]);
  const make = await timeIt(() => run('zck', ['-o', join(work, 'srv', 'target.zck'), target]));
  const ds = await run('zck_delta_size', [
    join(work, 'dev', 'base.zck'),
    join(work, 'srv', 'target.zck'),
  ]);
  // "Would download N of M bytes" (zchunk 1.2): N counts chunk data plus the header.
  const m = /download (\d+) of (\d+) bytes/i.exec(ds.stdout + ds.stderr);
  if (!m) throw new Error(`zck_delta_size printed no size: ${ds.stdout.slice(0, 200)}`);
  const apply = await withNginx(join(work, 'srv'), (url) =>
    timeIt(async () => {
      const dev = join(work, 'dev');
      await run('sh', [
        '-c',
        'cd "$1" && zckdl -q -s base.zck "$2"',
        'sh',
        dev,
        `${url}/target.zck`,
      ]);
      await run('sh', [
        '-c',
        'unzck -c "$1" > "$2"',
        'sh',
        join(dev, 'target.zck'),
        join(dev, 'target'),
      ]);
    }),
  );
  const verified = (await fileSha256(join(work, 'dev', 'target'))) === (await fileSha256(target));
  await rm(work, { recursive: true, force: true });
  return {
    peer: 'zchunk image',
    pair,
    bytes: Number(m[1]),
    publishSeconds: make.seconds,
    applySeconds: apply.seconds,
    verified,
    note: 'zck_delta_size; apply = zckdl from nginx + unzck',
  };
}

/** xdelta3 -9 with a source window covering the whole base: exact-base pairwise delta. */
export async function xdeltaPeer(
  label: string,
  pair: string,
  base: string,
  target: string,
): Promise<DeltaRow> {
  need('xdelta3');
  const work = join(CACHE, 'xdelta3', `${label}-${pair}`);
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  const win = String(2 ** Math.ceil(Math.log2(Math.max((await stat(base)).size, 1 << 20))));
  const patch = join(work, 'patch.vcdiff');
  const out = join(work, 'out.img');
  const make = await timeIt(() =>
    run('xdelta3', ['-e', '-9', '-f', '-B', win, '-s', base, target, patch]),
  );
  const apply = await timeIt(() => run('xdelta3', ['-d', '-f', '-B', win, '-s', base, patch, out]));
  const verified = (await fileSha256(out)) === (await fileSha256(target));
  const bytes = (await stat(patch)).size;
  await rm(work, { recursive: true, force: true });
  return {
    peer: `xdelta3 ${label}`,
    pair,
    bytes,
    publishSeconds: make.seconds,
    applySeconds: apply.seconds,
    verified,
    note: `xdelta3 -e -9 -B ${win}`,
  };
}
