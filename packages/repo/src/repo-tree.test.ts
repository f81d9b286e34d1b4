import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { access, mkdir, readdir, readFile, rm, symlink, link, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { zstdCompressSync, zstdDecompressSync } from 'node:zlib';
import {
  createBundle,
  encodeTree,
  isFerryError,
  scanTree,
  treeDigest,
  type TreeListing,
} from '@ferry/core';
import { makeRepoFixture, seededBytes, type RepoFixture } from './fixtures/repo-fixture.ts';
import { withChannelIndex } from './channel-index.ts';
import { commit } from './repo-commit.ts';
import { gc } from './repo-gc.ts';
import { initRepo } from './repo-init.ts';
import { objectFile, treeDeltaFile, treeFile } from './repo-layout.ts';
import { publishBundle, type PublishResult } from './repo-publish.ts';
import { loadRepo } from './repo-state.ts';
import { listRepoReleases } from './release.ts';
import { listObjects, objectPaths } from './repo-tree.ts';
import { verifyRepo } from './repo-verify.ts';

/** A small rootfs; `version` changes usr/bin/app and adds etc/motd-<version>. */
async function makeRootfs(f: RepoFixture, version: string): Promise<string> {
  const root = join(f.work, `rootfs-${version}`);
  await mkdir(join(root, 'etc'), { recursive: true });
  await mkdir(join(root, 'usr', 'bin'), { recursive: true });
  await mkdir(join(root, 'usr', 'lib'), { recursive: true });
  await writeFile(join(root, 'etc', 'hostname'), 'widget\n');
  await writeFile(join(root, 'usr', 'lib', 'libc.so'), seededBytes('libc', 300_000));
  await link(join(root, 'usr', 'lib', 'libc.so'), join(root, 'usr', 'lib', 'libc.so.6'));
  await symlink('../lib/libc.so', join(root, 'usr', 'bin', 'libc-link'));
  await writeFile(join(root, 'usr', 'bin', 'app'), seededBytes(`app-${version}`, 100_000));
  if (version !== '1.0.0') await writeFile(join(root, 'etc', `motd-${version}`), version);
  return root;
}

/** A bundle whose image carries the listing of `root`. */
async function makeTreeBundle(f: RepoFixture, version: string, counter: number, root: string) {
  const listing = join(f.work, `${version}.tree`);
  await writeFile(listing, encodeTree(await scanTree(root)));
  const image = join(f.work, `${version}.img`);
  await writeFile(image, seededBytes(`img-${version}`, 100_000));
  const out = join(f.work, `${version}.fbd`);
  await createBundle({
    images: [{ name: 'rootfs', path: image, type: 'raw', tree: listing }],
    compatible: 'acme-widget',
    version,
    releaseCounter: counter,
    keys: [f.bundleKey],
    out,
    created: '2026-01-01T00:00:00Z',
  });
  return out;
}

/** Removes a release from the stable channel (there is no command for it yet). */
async function dropRelease(f: RepoFixture, version: string): Promise<void> {
  const state = await loadRepo(f.repo);
  const targets = { ...state.roles.get('channel-stable')!.signed.targets };
  for (const p of Object.keys(targets)) if (p.includes(`/${version}/`)) delete targets[p];
  const map = await withChannelIndex(f.repo, 'stable', 'acme-widget', targets);
  await commit(state, { roles: new Map([['channel-stable', map]]) }, f.signing, new Date());
}

async function count<T>(it: AsyncIterable<T>): Promise<number> {
  let n = 0;
  for await (const _ of it) n++;
  return n;
}

const ids = (l: TreeListing) => new Set(objectPaths(l).keys());

describe('publishBundle with tree sources', () => {
  let f: RepoFixture;
  let roots: Record<string, string>;
  let listings: Record<string, TreeListing>;
  let r1: PublishResult;
  let r2: PublishResult;
  const trustedRoot = () => join(f.repo, 'metadata/1.root.json');
  const publish = (bundle: string, root: string) =>
    publishBundle(f.repo, bundle, {
      channel: 'stable',
      keyring: f.keyring,
      keys: f.signing,
      trees: { rootfs: root },
    });

  before(async () => {
    f = await makeRepoFixture();
    await initRepo(f.repo, { keys: f.keys });
    roots = {};
    listings = {};
    for (const v of ['1.0.0', '1.1.0', '1.2.0']) {
      roots[v] = await makeRootfs(f, v);
      listings[v] = await scanTree(roots[v]);
    }
    r1 = await publish(await makeTreeBundle(f, '1.0.0', 1, roots['1.0.0']!), roots['1.0.0']!);
    r2 = await publish(await makeTreeBundle(f, '1.1.0', 2, roots['1.1.0']!), roots['1.1.0']!);
  });
  after(() => f.cleanup());

  describe('when two releases share files', () => {
    it('stores every object of the first and its listing', async () => {
      const t = r1.trees[0]!;
      assert.equal(t.objects.total, 3); // hostname, libc (twice linked), app
      assert.equal(t.objects.added, 3);
      assert.equal(t.treeAdded, true);
      assert.equal(t.digest, treeDigest(encodeTree(listings['1.0.0']!)));
      await access(treeFile(f.repo, t.digest));
    });
    it('stores only the objects the second adds', async () => {
      const t = r2.trees[0]!;
      const v1 = ids(listings['1.0.0']!);
      const fresh = [...ids(listings['1.1.0']!)].filter((id) => !v1.has(id));
      assert.equal(fresh.length, 2); // the changed app, the new motd
      assert.equal(t.objects.total, 4);
      assert.equal(t.objects.added, 2);
      assert.equal(await count(listObjects(f.repo)), 5);
    });
    it('stores the second listing as a delta from the first', async () => {
      const [t1, t2] = [r1.trees[0]!.digest, r2.trees[0]!.digest];
      const frame = await readFile(treeDeltaFile(f.repo, t2, t1));
      const bytes = zstdDecompressSync(frame, { dictionary: encodeTree(listings['1.0.0']!) });
      assert.equal(treeDigest(bytes), t2);
      assert.ok(frame.length < (await readFile(treeFile(f.repo, t2))).length);
    });
    it('passes a deep verify', async () => {
      const report = await verifyRepo(f.repo, { trustedRoot: trustedRoot(), deep: true });
      assert.equal(report.trees, 2);
      assert.equal(report.objects, 5);
    });
  });

  describe('when the source directory is not the signed tree', () => {
    it('refuses with REPO_TREE_MISMATCH and writes nothing', async () => {
      const bundle = await makeTreeBundle(f, '1.2.0', 3, roots['1.2.0']!);
      await writeFile(join(roots['1.2.0']!, 'etc', 'hostname'), 'tampered\n');
      const before = await readdir(join(f.repo, 'metadata'));
      await assert.rejects(publish(bundle, roots['1.2.0']!), (e) =>
        isFerryError(e, 'REPO_TREE_MISMATCH'),
      );
      assert.deepEqual(await readdir(join(f.repo, 'metadata')), before);
      assert.equal(await count(listObjects(f.repo)), 5);
      // Two listings and the delta between them.
      assert.equal((await readdir(join(f.repo, 'trees'))).length, 3);
      assert.equal((await listRepoReleases(f.repo)).length, 2);
    });
  });

  describe('when a release is dropped and gc runs', () => {
    it('deletes its listing and the objects only it used', async () => {
      await dropRelease(f, '1.0.0');
      const r = await gc(f.repo);
      assert.deepEqual(r.trees, { kept: 1, deleted: 2 }); // the 1.0.0 listing and the delta from it
      assert.deepEqual(await readdir(join(f.repo, 'trees')), [`${r2.trees[0]!.digest}.tree.zst`]);
      assert.equal(r.objects.deleted, 1); // the 1.0.0 app
      assert.equal(r.objects.kept, 4);
      for (const id of ids(listings['1.1.0']!)) await access(objectFile(f.repo, id));
      await verifyRepo(f.repo, { trustedRoot: trustedRoot(), deep: true });
    });
  });

  describe('when an object of a published tree is damaged', () => {
    it('reports a deleted one with REPO_OBJECT_MISSING', async () => {
      const [id] = ids(listings['1.1.0']!);
      const path = objectFile(f.repo, id!);
      const saved = zstdCompressSync(seededBytes('unused', 10));
      await rm(path);
      await assert.rejects(verifyRepo(f.repo, { trustedRoot: trustedRoot() }), (e) =>
        isFerryError(e, 'REPO_OBJECT_MISSING'),
      );
      await writeFile(path, saved);
    });
    it('reports a replaced one with REPO_OBJECT_CORRUPT only when deep', async () => {
      await verifyRepo(f.repo, { trustedRoot: trustedRoot() });
      await assert.rejects(verifyRepo(f.repo, { trustedRoot: trustedRoot(), deep: true }), (e) =>
        isFerryError(e, 'REPO_OBJECT_CORRUPT'),
      );
    });
  });
});
