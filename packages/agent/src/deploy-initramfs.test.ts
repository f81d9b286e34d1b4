import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, readFile, readdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { needs, tempDir } from '@ferry/testing';

const SCRIPT = new URL('../../../contrib/initramfs/ferry-deploy-root.sh', import.meta.url).pathname;
const ID = '7-0123456789ab';
const STORE = 'var/lib/ferry/deploy';

/** A data partition as a directory: one deployment, its /etc, and the shared var. */
async function dataPartition(dir: string): Promise<string> {
  const data = join(dir, 'data');
  const dep = join(data, STORE, 'deployments', ID);
  for (const d of ['usr/bin', 'etc', 'var', 'proc']) await mkdir(join(dep, d), { recursive: true });
  await writeFile(join(dep, 'usr/bin/tool'), 'tool from the deployment\n');
  await writeFile(join(dep, 'etc/hostname'), 'pristine\n');
  await mkdir(join(data, STORE, 'etc', ID), { recursive: true });
  await writeFile(join(data, STORE, 'etc', ID, 'hostname'), 'merged\n');
  await writeFile(join(data, 'var/marker'), 'data var\n');
  await mkdir(join(dir, 'newroot'));
  return data;
}

/** busybox applets first on PATH, so the script runs on busybox sh and busybox mount. */
async function busyboxPath(dir: string): Promise<string> {
  const bin = join(dir, 'bb');
  await mkdir(bin);
  for (const a of ['sh', 'mount', 'umount', 'mkdir', 'cat', 'touch', 'mktemp', 'findfs'])
    await symlink('/bin/busybox', join(bin, a));
  return `${bin}:${process.env.PATH ?? ''}`;
}

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the script in a private mount namespace, then `checks` in the same shell (the mounts vanish
 * with the namespace). `$S`, `$N` (new root), `$D` (data) and `$C` (cmdline) are set.
 */
function runInNamespace(o: {
  dir: string;
  data: string;
  cmdline: string;
  checks?: string;
  path?: string;
}): Run {
  const body = `"$SH" "$S" --cmdline "$C" --data "$D" --newroot "$N" || exit $?\n${o.checks ?? ''}`;
  const sh = o.path ? 'busybox' : 'sh';
  const r = spawnSync(
    'unshare',
    ['-m', '--propagation', 'private', sh, ...(o.path ? ['sh'] : []), '-c', body],
    {
      encoding: 'utf8',
      env: {
        PATH: o.path ?? process.env.PATH ?? '',
        SH: 'sh',
        S: SCRIPT,
        N: join(o.dir, 'newroot'),
        D: o.data,
        C: o.cmdline,
      },
    },
  );
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const CHECKS = `
cat "$N/usr/bin/tool"
if touch "$N/usr/bin/new" 2>/dev/null; then echo usr=writable; else echo usr=read-only; fi
if echo written > "$N/etc/new-file"; then echo etc=writable; fi
cat "$N/etc/hostname" "$N/var/marker"
`;

describe('ferry-deploy-root.sh', () => {
  for (const variant of ['sh and util-linux', 'busybox'] as const)
    describe(`when it boots a deployment (${variant})`, () => {
      it(
        'binds the deployment read-only, its /etc read-write and the data var',
        needs('root', 'unshare', ...(variant === 'busybox' ? (['busybox'] as const) : [])),
        async () => {
          const t = await tempDir();
          try {
            const data = await dataPartition(t.dir);
            const path = variant === 'busybox' ? await busyboxPath(t.dir) : undefined;
            const r = runInNamespace({
              dir: t.dir,
              data,
              cmdline: `root=PARTLABEL=data ro ferry.deployment=${ID} quiet`,
              checks: CHECKS,
              ...(path ? { path } : {}),
            });
            assert.equal(r.status, 0, r.stderr);
            assert.deepEqual(r.stdout.trim().split('\n'), [
              'tool from the deployment',
              'usr=read-only',
              'etc=writable',
              'merged',
              'data var',
            ]);
            // The write went to the deployment's own /etc, not to the pristine tree.
            assert.equal(
              await readFile(join(data, STORE, 'etc', ID, 'new-file'), 'utf8'),
              'written\n',
            );
            assert.deepEqual((await readdir(join(data, STORE, 'deployments', ID, 'etc'))).sort(), [
              'hostname',
            ]);
            assert.deepEqual(await readdir(join(data, STORE, 'deployments', ID, 'usr/bin')), [
              'tool',
            ]);
            assert.deepEqual(await readdir(join(t.dir, 'newroot')), []);
          } finally {
            await t.cleanup();
          }
        },
      );
    });

  describe('when the deployment cannot be booted', () => {
    const cases: Array<[string, string]> = [
      ['a path in the id', 'ferry.deployment=../../../etc'],
      ['upper-case hex', 'ferry.deployment=7-0123456789AB'],
      ['13 hex digits', 'ferry.deployment=7-0123456789abc'],
      ['16 digits', 'ferry.deployment=1234567890123456-0123456789ab'],
      ['no id', 'root=/dev/vda5 ro'],
      ['a missing deployment', 'ferry.deployment=8-0123456789ab'],
      ['a store path leaving the partition', `ferry.deployment=${ID} ferry.store=../deploy`],
    ];
    for (const [what, cmdline] of cases)
      it(
        `refuses ${what} with one line and a non-zero exit`,
        needs('root', 'unshare'),
        async () => {
          const t = await tempDir();
          try {
            const data = await dataPartition(t.dir);
            const r = runInNamespace({ dir: t.dir, data, cmdline, checks: 'echo mounted' });
            assert.equal(r.status, 1);
            assert.equal(r.stdout, '');
            assert.match(r.stderr, /^ferry-deploy-root: [^\n]+\n$/);
          } finally {
            await t.cleanup();
          }
        },
      );
  });
});
