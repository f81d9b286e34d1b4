import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { ChunkStore, chunkId } from '@ferry/core';
import { makeBundle, makeRepoFixture, type RepoFixture } from './fixtures/repo-fixture.ts';
import { gc } from './repo-gc.ts';
import { initRepo } from './repo-init.ts';
import { publishBundle, type PublishResult } from './repo-publish.ts';
import { verifyRepo } from './repo-verify.ts';

describe('gc', () => {
  let f: RepoFixture;
  let published: PublishResult;
  let orphan: string;
  before(async () => {
    f = await makeRepoFixture();
    await initRepo(f.repo, { keys: f.keys });
    const b = await makeBundle(f, { version: '1.0.0', releaseCounter: 1 });
    published = await publishBundle(f.repo, b, {
      channel: 'stable',
      keyring: f.keyring,
      keys: f.signing,
    });
    const data = randomBytes(20_000);
    orphan = chunkId(data);
    await new ChunkStore(f.repo).put(orphan, data);
  });
  after(() => f.cleanup());

  describe('when run dry', () => {
    it('counts the orphan without deleting it', async () => {
      const r = await gc(f.repo, { dryRun: true });
      assert.equal(r.deleted, 1);
      assert.ok(await new ChunkStore(f.repo).has(orphan));
    });
  });

  describe('when a chunk is referenced by no published chunk index', () => {
    it('deletes it and keeps every referenced chunk', async () => {
      const r = await gc(f.repo);
      assert.equal(r.deleted, 1);
      assert.ok(r.deletedBytes > 0);
      assert.equal(r.kept, published.chunks.total);
      assert.equal(await new ChunkStore(f.repo).has(orphan), false);
      await verifyRepo(f.repo, { trustedRoot: join(f.repo, 'metadata/1.root.json') });
    });
  });
});
