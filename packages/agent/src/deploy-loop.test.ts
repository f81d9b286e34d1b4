/**
 * Privileged layer: the deployment store on real ext4 and btrfs filesystems, each made in a
 * file and loop-mounted (mount -o loop detaches the loop device again on umount).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, readdir, rm, stat, statfs, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { scanTree, type TreeListing } from '@ferry/core';
import { needs, tempDir } from '@ferry/testing';
import { DeployStore } from './deploy-store.ts';
import { DirectoryObjectSource, objectPath } from './deploy-objects.ts';
import { makeReleaseTree } from './deploy-fixture.ts';

const caps = needs('root', 'loop', 'setfattr', 'mknod');
const btrfsCaps = needs('root', 'loop', 'setfattr', 'mknod', 'mkfs.btrfs');
const rel = (n: number) => ({ version: `${n}.0.0`, counter: n });
let t: { dir: string; cleanup: () => Promise<void> };
const trees: TreeListing[] = [];

before(async () => {
  if (caps.skip) return;
  t = await tempDir('ferry-deploy-loop-');
  for (const n of [1, 2]) {
    await makeReleaseTree(join(t.dir, `v${n}`), n);
    trees[n] = await scanTree(join(t.dir, `v${n}`));
  }
});
after(() => t?.cleanup());

/** Makes a `type` filesystem of `mib` MiB in a file, mounts it, runs `body`, always unmounts. */
async function withFs(
  type: 'ext4' | 'btrfs',
  mib: number,
  body: (mnt: string) => Promise<void>,
): Promise<void> {
  const img = join(t.dir, `${type}-${mib}.img`);
  const mnt = join(t.dir, `${type}-${mib}.mnt`);
  await writeFile(img, '');
  await truncate(img, mib << 20);
  execFileSync(`mkfs.${type}`, ['-q', img], { stdio: 'ignore' });
  await mkdir(mnt);
  execFileSync('mount', ['-o', 'loop', img, mnt]);
  try {
    await body(mnt);
  } finally {
    execFileSync('umount', [mnt]);
  }
}

async function importAndCheckout(store: DeployStore, n: number, mode?: 'reflink'): Promise<string> {
  await store.importObjects(trees[n]!, new DirectoryObjectSource(join(t.dir, `v${n}`), trees[n]!));
  return (await store.checkout(trees[n]!, { release: rel(n), mode })).id;
}

async function sharesInodes(store: DeployStore, a: string, b: string): Promise<void> {
  const p = 'usr/lib/libc.so';
  const ia = (await stat(join(store.deploymentPath(a), p))).ino;
  assert.equal(ia, (await stat(join(store.deploymentPath(b), p))).ino);
}

describe('deployment store on loop filesystems', () => {
  it('checks out and verifies two releases on ext4, sharing inodes', caps, async () => {
    await withFs('ext4', 64, async (mnt) => {
      const store = await DeployStore.open(join(mnt, 'deploy'));
      const a = await importAndCheckout(store, 1);
      const b = await importAndCheckout(store, 2);
      await store.verifyDeployment(a);
      await store.verifyDeployment(b);
      await sharesInodes(store, a, b);
      const owned = await stat(join(store.deploymentPath(b), 'usr/bin/owned'));
      assert.deepEqual([owned.uid, owned.gid], [1234, 4321]);
    });
  });

  it(
    'checks out on btrfs, and a reflink checkout is writable without touching the object',
    btrfsCaps,
    async () => {
      await withFs('btrfs', 160, async (mnt) => {
        const store = await DeployStore.open(join(mnt, 'deploy'));
        const a = await importAndCheckout(store, 1);
        const b = await importAndCheckout(store, 2);
        await sharesInodes(store, a, b);
        const r = (await store.checkout(trees[2]!, { release: rel(2), mode: 'reflink' })).id;
        await store.verifyDeployment(r);
        const entry = trees[2]!.entries.find((e) => e.path === 'usr/lib/libc.so')!;
        const obj = objectPath(store.dir, entry.object!);
        const file = join(store.deploymentPath(r), 'usr/lib/libc.so');
        assert.notEqual((await stat(file)).ino, (await stat(obj)).ino);
        const before = createHash('sha256')
          .update(await readFile(obj))
          .digest('hex');
        await writeFile(file, 'changed in the deployment');
        assert.equal(
          createHash('sha256')
            .update(await readFile(obj))
            .digest('hex'),
          before,
        );
        await store.verifyDeployment(b);
        await assert.rejects(store.verifyDeployment(r), { code: 'DEPLOY_TREE_MISMATCH' });
      });
    },
  );

  it('refuses a release on a nearly full ext4 before writing anything', caps, async () => {
    await withFs('ext4', 8, async (mnt) => {
      const store = await DeployStore.open(join(mnt, 'deploy'));
      const fs = await statfs(mnt);
      const free = fs.bavail * fs.bsize;
      // Leave about 200 KiB: less than libc.so (300 kB) alone.
      execFileSync('fallocate', ['-l', String(free - 200 * 1024), join(mnt, 'filler')]);
      await assert.rejects(store.preflight(trees[1]!), { code: 'DEPLOY_NO_SPACE' });
      assert.deepEqual(await readdir(join(store.dir, 'objects')), ['tmp']);
      await rm(join(mnt, 'filler'));
      const ok = await store.preflight(trees[1]!);
      assert.ok(ok.neededBytes < ok.availableBytes);
    });
  });
});
