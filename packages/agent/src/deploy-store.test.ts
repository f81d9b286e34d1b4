/** Component tests of the deployment store on a plain temp dir (a fake system root). */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, readFile, readdir, rm, stat, statfs, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { scanTree, type TreeEntry, type TreeListing } from '@ferry/core';
import { needs, tempDir } from '@ferry/testing';
import { DeployStore, firstDifference } from './deploy-store.ts';
import {
  DirectoryObjectSource,
  objectEntries,
  objectPath,
  type ObjectSource,
} from './deploy-objects.ts';
import { RELEASE_OBJECTS, makeReleaseTree } from './deploy-fixture.ts';

const caps = needs('setfattr', 'mknod');
const rel = (n: number) => ({ version: `${n}.0.0`, counter: n });
let t: { dir: string; cleanup: () => Promise<void> };
const trees: TreeListing[] = [];
const srcDir = (n: number) => join(t.dir, `rootfs-v${n}`);

before(async () => {
  if (caps.skip) return;
  t = await tempDir('ferry-deploy-');
  for (const n of [1, 2, 3]) {
    await makeReleaseTree(srcDir(n), n);
    trees[n] = await scanTree(srcDir(n));
  }
});
after(async () => {
  if (!t) return;
  await chmod(join(srcDir(1), 'var/empty'), 0o755).catch(() => {});
  await t.cleanup();
});

async function storeWith(
  name: string,
  releases: number[],
): Promise<{ store: DeployStore; ids: string[] }> {
  const store = await DeployStore.open(join(t.dir, name));
  const ids: string[] = [];
  for (const n of releases) {
    await store.importObjects(trees[n]!, new DirectoryObjectSource(srcDir(n), trees[n]!));
    ids.push((await store.checkout(trees[n]!, { release: rel(n) })).id);
  }
  return { store, ids };
}

/** A source that serves `bytes` for one object and the real content for the others. */
function tampered(n: number, victim: string, bytes: Buffer): ObjectSource {
  const real = new DirectoryObjectSource(srcDir(n), trees[n]!);
  return { open: async (id, e) => (id === victim ? Readable.from([bytes]) : real.open(id, e)) };
}

const fileEntry = (n: number, path: string): TreeEntry =>
  trees[n]!.entries.find((e) => e.path === path)!;

describe('DeployStore', () => {
  describe('when a release is imported and checked out', () => {
    it('imports each object once and checks out a tree that verifies', caps, async () => {
      const store = await DeployStore.open(join(t.dir, 's1'));
      assert.equal((await store.missingObjects(trees[1]!)).length, RELEASE_OBJECTS);
      const r = await store.importObjects(
        trees[1]!,
        new DirectoryObjectSource(srcDir(1), trees[1]!),
      );
      assert.equal(r.objects, RELEASE_OBJECTS);
      assert.deepEqual(await store.missingObjects(trees[1]!), []);
      const d = await store.checkout(trees[1]!, { release: rel(1) });
      await store.verifyDeployment(d.id);
      const p = store.deploymentPath(d.id);
      assert.deepEqual(
        await readFile(join(p, 'usr/lib/libc.so')),
        await readFile(join(srcDir(1), 'usr/lib/libc.so')),
      );
      assert.equal((await stat(join(p, 'usr/bin/su'))).mode & 0o7777, 0o4755);
      assert.equal(
        (await stat(join(p, 'usr/bin/tool'))).ino,
        (await stat(join(p, 'usr/bin/tool-alias'))).ino,
      );
      assert.equal((await stat(join(p, 'etc/hostname'))).mtimeMs, 0);
      assert.deepEqual(await readdir(join(t.dir, 's1', 'objects', 'tmp')), []);
    });
    it('fetches only the objects a second release adds, and shares inodes', caps, async () => {
      const { store, ids } = await storeWith('s2', [1]);
      const missing = await store.missingObjects(trees[2]!);
      assert.equal(missing.length, 3);
      const r = await store.importObjects(
        trees[2]!,
        new DirectoryObjectSource(srcDir(2), trees[2]!),
      );
      assert.equal(r.objects, 3);
      const d2 = await store.checkout(trees[2]!, { release: rel(2) });
      await store.verifyDeployment(d2.id);
      const a = await stat(join(store.deploymentPath(ids[0]!), 'usr/lib/libc.so'));
      const b = await stat(join(store.deploymentPath(d2.id), 'usr/lib/libc.so'));
      assert.equal(a.ino, b.ino);
      const osA = await stat(join(store.deploymentPath(ids[0]!), 'etc/os-release'));
      const osB = await stat(join(store.deploymentPath(d2.id), 'etc/os-release'));
      assert.notEqual(osA.ino, osB.ino);
    });
    it('gives a copy-mode checkout its own inodes and still verifies', caps, async () => {
      const { store, ids } = await storeWith('s3', [1]);
      const d = await store.checkout(trees[1]!, { release: rel(1), mode: 'copy' });
      await store.verifyDeployment(d.id);
      const a = await stat(join(store.deploymentPath(ids[0]!), 'usr/bin/su'));
      const b = await stat(join(store.deploymentPath(d.id), 'usr/bin/su'));
      assert.notEqual(a.ino, b.ino);
    });
    it('refuses a checkout whose objects were not imported', caps, async () => {
      const store = await DeployStore.open(join(t.dir, 's4'));
      await assert.rejects(store.checkout(trees[1]!, { release: rel(1) }), {
        code: 'DEPLOY_OBJECT_MISSING',
      });
      assert.deepEqual(await readdir(join(t.dir, 's4', 'deployments')), []);
    });
  });

  describe('when the object source is corrupt', () => {
    const victim = () => fileEntry(1, 'usr/lib/libc.so');
    for (const [i, [what, bytes]] of [
      ['other bytes of the right size', () => Buffer.alloc(300_000, 7)],
      ['more bytes than the listing says', () => Buffer.alloc(300_001)],
      ['fewer bytes', () => Buffer.alloc(10)],
    ].entries() as Iterable<[number, [string, () => Buffer]]>)
      it(`refuses ${what} with DEPLOY_OBJECT_MISMATCH and keeps nothing of it`, caps, async () => {
        const store = await DeployStore.open(join(t.dir, `bad-${i}`));
        const v = victim();
        await assert.rejects(store.importObjects(trees[1]!, tampered(1, v.object!, bytes())), {
          code: 'DEPLOY_OBJECT_MISMATCH',
        });
        assert.deepEqual(await readdir(join(store.dir, 'objects', 'tmp')), []);
        await assert.rejects(stat(objectPath(store.dir, v.object!)), { code: 'ENOENT' });
        assert.ok((await store.missingObjects(trees[1]!)).includes(v.object!));
      });
  });

  describe('when a checked-out deployment is tampered with', () => {
    it('fails verify with DEPLOY_TREE_MISMATCH after a file is rewritten', caps, async () => {
      const { store, ids } = await storeWith('tamper1', [1]);
      const p = join(store.deploymentPath(ids[0]!), 'etc/hostname');
      await rm(p);
      await writeFile(p, 'evil\n');
      await assert.rejects(store.verifyDeployment(ids[0]!), { code: 'DEPLOY_TREE_MISMATCH' });
    });
    it('fails verify after a mode change or an added file', caps, async () => {
      const { store, ids } = await storeWith('tamper2', [1]);
      const root = store.deploymentPath(ids[0]!);
      await chmod(join(root, 'usr/bin/tool'), 0o777);
      await assert.rejects(store.verifyDeployment(ids[0]!), { code: 'DEPLOY_TREE_MISMATCH' });
      await chmod(join(root, 'usr/bin/tool'), fileEntry(1, 'usr/bin/tool').mode);
      await store.verifyDeployment(ids[0]!);
      await writeFile(join(root, 'etc/extra'), '');
      await assert.rejects(store.verifyDeployment(ids[0]!), { code: 'DEPLOY_TREE_MISMATCH' });
    });
    it('names the first differing path', () => {
      const e = (path: string, mode = 0o644): TreeEntry => ({
        path,
        type: 'dir',
        mode,
        uid: 0,
        gid: 0,
      });
      assert.equal(firstDifference([e(''), e('a'), e('b')], [e(''), e('a'), e('b', 0o600)]), 'b');
      assert.equal(firstDifference([e(''), e('b')], [e(''), e('a'), e('b')]), 'a');
      assert.equal(firstDifference([e(''), e('a')], [e('')]), 'a');
    });
  });

  describe('when deployments are pinned, pruned, removed and collected', () => {
    it(
      'keeps default, booted and pinned ones and gc frees exactly the orphaned objects',
      caps,
      async () => {
        const { store, ids } = await storeWith('prune', [1, 2, 3]);
        const [d1, d2, d3] = ids as [string, string, string];
        await store.setDefault(d2);
        await store.markBooted(d2);
        await store.setDefault(d3);
        await store.pin(d1);
        assert.deepEqual(await store.prune(1), []);
        await store.unpin(d1);
        assert.deepEqual(await store.prune(1), [d1]);
        assert.deepEqual(
          store.list().map((d) => [d.id, d.isDefault, d.isBooted, d.isPrevious]),
          [
            [d2, false, true, true],
            [d3, true, false, false],
          ],
        );
        const live = new Set([
          ...objectEntries(trees[2]!).keys(),
          ...objectEntries(trees[3]!).keys(),
        ]);
        const orphans = [...objectEntries(trees[1]!).values()].filter((e) => !live.has(e.object!));
        assert.equal(orphans.length, 2); // v1's os-release and libapp.so
        const r = await store.gc();
        assert.equal(r.objects, orphans.length);
        assert.equal(
          r.bytes,
          orphans.reduce((n, e) => n + e.size!, 0),
        );
        assert.equal(r.trees, 1);
        for (const e of orphans)
          await assert.rejects(stat(objectPath(store.dir, e.object!)), { code: 'ENOENT' });
        await store.verifyDeployment(d2);
        await store.verifyDeployment(d3);
        assert.deepEqual(await store.gc(), { objects: 0, bytes: 0, trees: 0 });
      },
    );
    it('refuses to remove the default or booted deployment, or an unknown id', caps, async () => {
      const { store, ids } = await storeWith('remove', [1, 2]);
      await store.setDefault(ids[0]!);
      await store.markBooted(ids[1]!);
      await assert.rejects(store.remove(ids[0]!), { code: 'DEPLOY_IN_USE' });
      await assert.rejects(store.remove(ids[1]!), { code: 'DEPLOY_IN_USE' });
      await assert.rejects(store.remove('../../etc'), { code: 'DEPLOY_NOT_FOUND' });
      await assert.rejects(store.pin('9-000000000000'), { code: 'DEPLOY_NOT_FOUND' });
    });
    it(
      'keeps its record across reopening and clears what an interrupted writer left',
      caps,
      async () => {
        const { store, ids } = await storeWith('reopen', [1]);
        await store.pin(ids[0]!);
        await mkdir(join(store.dir, 'deployments', '.tmp-2-abcdefabcdef', 'usr'), {
          recursive: true,
        });
        await mkdir(join(store.dir, 'deployments', '7-abcdefabcdef'));
        await writeFile(join(store.dir, 'objects', 'tmp', 'partial'), 'x');
        const again = await DeployStore.open(store.dir);
        assert.deepEqual(again.list(), store.list());
        assert.deepEqual(await readdir(join(store.dir, 'deployments')), [ids[0]]);
        assert.deepEqual(await readdir(join(store.dir, 'objects', 'tmp')), []);
      },
    );
    it('refuses a corrupt deployments.json with DEPLOY_STATE_INVALID', caps, async () => {
      const dir = join(t.dir, 'corrupt');
      await DeployStore.open(dir);
      await writeFile(join(dir, 'deployments.json'), '{"version":1,"deployments":"x"}');
      await assert.rejects(DeployStore.open(dir), { code: 'DEPLOY_STATE_INVALID' });
    });
  });

  describe('when space is short or the filesystem lacks a feature', () => {
    it(
      'refuses a tree larger than the free space with DEPLOY_NO_SPACE, writing nothing',
      caps,
      async () => {
        const store = await DeployStore.open(join(t.dir, 'space'));
        const huge = structuredClone(trees[1]!);
        const e = huge.entries.find((x) => x.path === 'usr/lib/libc.so')!;
        const fs = await statfs(store.dir);
        e.size = fs.bavail * fs.bsize + 1;
        e.object = 'f'.repeat(64);
        await assert.rejects(store.preflight(huge), { code: 'DEPLOY_NO_SPACE' });
        const ok = await store.preflight(trees[1]!);
        assert.equal(ok.missingObjects, RELEASE_OBJECTS);
        assert.ok(ok.neededBytes > 300_000 && ok.neededBytes < ok.availableBytes);
        assert.deepEqual(await readdir(join(store.dir, 'objects')), ['tmp']);
      },
    );
    it('refuses reflink checkout on ext4 with DEPLOY_REFLINK_UNSUPPORTED', caps, async (ctx) => {
      if ((await statfs(t.dir)).type !== 0xef53) return ctx.skip('temp dir is not on ext4');
      const { store } = await storeWith('reflink-ext4', [1]);
      await assert.rejects(store.checkout(trees[1]!, { release: rel(1), mode: 'reflink' }), {
        code: 'DEPLOY_REFLINK_UNSUPPORTED',
      });
      assert.equal(store.list().length, 1);
    });
    it('measures the store against full copies', caps, async () => {
      const { store } = await storeWith('du', [1, 2]);
      const u = await store.du();
      assert.equal(u.objects, RELEASE_OBJECTS + 3);
      const sizes = (n: number) =>
        trees[n]!.entries.reduce((s, e) => s + (e.size ?? 0) + (e.target?.length ?? 0), 0);
      assert.equal(u.apparentBytes, sizes(1) + sizes(2));
      assert.ok(u.storeBytes < u.apparentBytes, `${u.storeBytes} < ${u.apparentBytes}`);
    });
  });
});
