import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Metadata, MetadataKind } from '@tufjs/models';
import { isFerryError } from '@ferry/core';
import { makeRepoFixture, newKey, type RepoFixture } from './fixtures/repo-fixture.ts';
import { initRepo } from './repo-init.ts';
import { verifyRepo } from './repo-verify.ts';
import { tufKey, tufKeyId } from './tuf-key.ts';

const NOW = new Date('2026-03-01T00:00:00Z');

type Json = Parameters<typeof Metadata.fromJSON>[1];

async function json(f: RepoFixture, path: string): Promise<Json> {
  return JSON.parse(await readFile(join(f.repo, path), 'utf8')) as Json;
}

async function load<K extends MetadataKind>(f: RepoFixture, name: string, kind: K) {
  const data = await json(f, join('metadata', name));
  return Metadata.fromJSON(kind as MetadataKind.Root, data) as unknown as Metadata<never>;
}

describe('initRepo', () => {
  let f: RepoFixture;
  before(async () => {
    f = await makeRepoFixture();
    await initRepo(f.repo, { keys: f.keys, now: NOW });
  });
  after(() => f.cleanup());

  describe('when a repository is created', () => {
    it('writes a root that @tufjs/models loads and that verifies with its own keys', async () => {
      const root = Metadata.fromJSON(MetadataKind.Root, await json(f, 'metadata/1.root.json'));
      root.verifyDelegate('root', root);
      assert.equal(root.signed.consistentSnapshot, true);
      assert.deepEqual(root.signed.roles.root!.keyIDs, [tufKeyId(f.keys.root[0]!)]);
      const copy = await readFile(join(f.repo, 'metadata/root.json'));
      assert.deepEqual(copy, await readFile(join(f.repo, 'metadata/1.root.json')));
    });

    it('signs timestamp, snapshot and targets with the keys root names', async () => {
      const root = Metadata.fromJSON(MetadataKind.Root, await json(f, 'metadata/1.root.json'));
      root.verifyDelegate('timestamp', await load(f, 'timestamp.json', MetadataKind.Timestamp));
      root.verifyDelegate('snapshot', await load(f, '1.snapshot.json', MetadataKind.Snapshot));
      root.verifyDelegate('targets', await load(f, '1.targets.json', MetadataKind.Targets));
    });

    it('sets the default expiry periods', async () => {
      const days = (iso: string) => (Date.parse(iso) - NOW.getTime()) / 86_400_000;
      const root = Metadata.fromJSON(MetadataKind.Root, await json(f, 'metadata/1.root.json'));
      assert.equal(days(root.signed.expires), 365);
      const ts = Metadata.fromJSON(
        MetadataKind.Timestamp,
        await json(f, 'metadata/timestamp.json'),
      );
      assert.equal(days(ts.signed.expires), 1);
    });

    it('verifies as a whole from its first root', async () => {
      const r = await verifyRepo(f.repo, {
        trustedRoot: join(f.repo, 'metadata/1.root.json'),
        now: NOW,
      });
      assert.deepEqual(
        [r.rootVersion, r.timestampVersion, r.snapshotVersion, r.targetsVersion],
        [1, 1, 1, 1],
      );
    });
  });

  describe('when the directory already holds a repository', () => {
    it('refuses with REPO_EXISTS', async () => {
      await assert.rejects(initRepo(f.repo, { keys: f.keys }), (e) =>
        isFerryError(e, 'REPO_EXISTS'),
      );
    });
  });

  describe('when a threshold exceeds the keys', () => {
    it('refuses with USAGE', async () => {
      await assert.rejects(
        initRepo(join(f.work, 'other'), { keys: f.keys, thresholds: { root: 2 } }),
        (e) => isFerryError(e, 'USAGE'),
      );
    });
  });
});

describe('tufKey', () => {
  describe('when given a Ferry key', () => {
    it('is the TUF ed25519 key, with the TUF key id, not the Ferry one', () => {
      const k = newKey();
      const tk = tufKey(k);
      const json = `{"keytype":"ed25519","keyval":{"public":"${tk.keyVal.public}"},"scheme":"ed25519"}`;
      assert.equal(tk.keyID, createHash('sha256').update(json).digest('hex'));
      assert.equal(tk.keyVal.public!.length, 64);
      assert.notEqual(tk.keyID, k.keyId);
      assert.equal(
        createHash('sha256').update(Buffer.from(tk.keyVal.public!, 'hex')).digest('hex'),
        k.keyId,
      );
    });
  });
});
