import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  ChunkStore,
  compressChunk,
  isFerryError,
  parseChunkIndex,
  type ErrorCode,
} from '@ferry/core';
import { makeBundle, makeRepoFixture, type RepoFixture } from './fixtures/repo-fixture.ts';
import { initRepo } from './repo-init.ts';
import { targetFile } from './repo-layout.ts';
import { publishBundle } from './repo-publish.ts';
import { loadRepo } from './repo-state.ts';
import { verifyRepo, type VerifyRepoOptions } from './repo-verify.ts';

describe('verifyRepo', () => {
  let f: RepoFixture;
  let manifestFile: string;
  let firstChunk: string;
  const opts = (o: Partial<VerifyRepoOptions> = {}): VerifyRepoOptions => ({
    trustedRoot: join(f.repo, 'metadata/1.root.json'),
    ...o,
  });
  const refuses = (code: ErrorCode, o?: Partial<VerifyRepoOptions>) =>
    assert.rejects(verifyRepo(f.repo, opts(o)), (e) => isFerryError(e, code));

  /** Replaces `path` with `bytes` while `fn` runs, then restores it. */
  async function tampered(path: string, bytes: Buffer, fn: () => Promise<void>) {
    const original = await readFile(path);
    await rename(path, `${path}.orig`);
    await writeFile(path, bytes);
    try {
      await fn();
    } finally {
      await rename(`${path}.orig`, path);
    }
    assert.deepEqual(await readFile(path), original);
  }

  before(async () => {
    f = await makeRepoFixture();
    await initRepo(f.repo, { keys: f.keys });
    const b = await makeBundle(f, { version: '1.0.0', releaseCounter: 1 });
    await publishBundle(f.repo, b, { channel: 'stable', keyring: f.keyring, keys: f.signing });
    const targets = (await loadRepo(f.repo)).roles.get('channel-stable')!.signed.targets;
    const m = targets['channels/stable/acme-widget/1.0.0/manifest.json']!;
    manifestFile = targetFile(f.repo, m.path, m.hashes.sha256!);
    const c = targets['channels/stable/acme-widget/1.0.0/rootfs.cidx']!;
    const index = parseChunkIndex(await readFile(targetFile(f.repo, c.path, c.hashes.sha256!)));
    firstChunk = index.chunks[0]!.id;
  });
  after(() => f.cleanup());

  describe('when nothing is tampered with', () => {
    it('returns a report', async () => {
      const r = await verifyRepo(f.repo, opts({ keyring: f.keyring }));
      assert.equal(r.targetFiles, 3);
      assert.ok(r.chunks > 5);
      assert.equal(r.chunkBytes, f.base.length);
    });
  });

  describe('when a target file is changed', () => {
    it('refuses with REPO_TARGET_MISMATCH', async () => {
      const bytes = await readFile(manifestFile);
      bytes[10] = bytes[10]! ^ 1;
      await tampered(manifestFile, bytes, () => refuses('REPO_TARGET_MISMATCH'));
    });
  });

  describe('when a chunk is replaced by another valid frame', () => {
    it('refuses with CHUNK_HASH_MISMATCH', async () => {
      const path = new ChunkStore(f.repo).pathOf(firstChunk);
      const other = compressChunk(randomBytes(1000));
      await tampered(path, other, () => refuses('CHUNK_HASH_MISMATCH'));
    });
  });

  describe('when a chunk is missing', () => {
    it('refuses with CHUNK_MISSING', async () => {
      const path = new ChunkStore(f.repo).pathOf(firstChunk);
      await rename(path, `${path}.away`);
      try {
        await refuses('CHUNK_MISSING');
      } finally {
        await rename(`${path}.away`, path);
      }
    });
  });

  describe('when the timestamp has expired', () => {
    it('refuses with REPO_METADATA_EXPIRED', async () => {
      await refuses('REPO_METADATA_EXPIRED', { now: new Date(Date.now() + 2 * 86_400_000) });
    });
  });

  describe('when the signed part of a channel role is changed after signing', () => {
    it('refuses with REPO_INVALID', async () => {
      const state = await loadRepo(f.repo);
      const path = join(
        f.repo,
        `metadata/${state.roles.get('channel-stable')!.signed.version}.channel-stable.json`,
      );
      const json = JSON.parse(await readFile(path, 'utf8')) as { signed: { expires: string } };
      json.signed.expires = '2099-01-01T00:00:00Z';
      await tampered(path, Buffer.from(JSON.stringify(json)), () => refuses('REPO_INVALID'));
    });
  });

  describe('when the trusted root is another repository', () => {
    it('refuses with REPO_INVALID', async () => {
      const g = await makeRepoFixture();
      try {
        await initRepo(g.repo, { keys: g.keys });
        await refuses('REPO_INVALID', { trustedRoot: join(g.repo, 'metadata/1.root.json') });
      } finally {
        await g.cleanup();
      }
    });
  });
});
