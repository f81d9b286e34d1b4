import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Metadata, MetadataKind } from '@tufjs/models';
import { isFerryError } from '@ferry/core';
import { makeBundle, makeRepoFixture, newKey, type RepoFixture } from './fixtures/repo-fixture.ts';
import { delegateChannel } from './channel.ts';
import { initRepo } from './repo-init.ts';
import { rotateKeys } from './repo-keys.ts';
import { publishBundle } from './repo-publish.ts';
import { refresh } from './repo-refresh.ts';
import { verifyRepo } from './repo-verify.ts';
import { tufKeyId } from './tuf-key.ts';

type Json = Parameters<typeof Metadata.fromJSON>[1];

async function root(f: RepoFixture, version: number) {
  const text = await readFile(join(f.repo, `metadata/${version}.root.json`), 'utf8');
  return Metadata.fromJSON(MetadataKind.Root, JSON.parse(text) as Json);
}

describe('rotateKeys', () => {
  let f: RepoFixture;
  const trustedRoot = () => join(f.repo, 'metadata/1.root.json');
  before(async () => {
    f = await makeRepoFixture();
    await initRepo(f.repo, { keys: f.keys });
    const v1 = await makeBundle(f, { version: '1.0.0', releaseCounter: 1 });
    await publishBundle(f.repo, v1, { channel: 'stable', keyring: f.keyring, keys: f.signing });
  });
  after(() => f.cleanup());

  describe('when the current root keys do not sign', () => {
    it('refuses with REPO_SIGNING_KEYS and writes no new root', async () => {
      await assert.rejects(
        rotateKeys(f.repo, 'root', { rootKeys: [newKey()], newKeys: [newKey()] }),
        (e) => isFerryError(e, 'REPO_SIGNING_KEYS'),
      );
      await assert.rejects(stat(join(f.repo, 'metadata/2.root.json')));
    });
  });

  describe('when root goes from 1-of-1 to 2-of-3', () => {
    const next = [newKey(), newKey(), newKey()];
    before(async () => {
      await rotateKeys(f.repo, 'root', { rootKeys: f.keys.root, newKeys: next, threshold: 2 });
    });

    it('writes 2.root.json signed by a threshold of the old and of the new keys', async () => {
      const v1 = await root(f, 1);
      const v2 = await root(f, 2);
      v1.verifyDelegate('root', v2);
      v2.verifyDelegate('root', v2);
      assert.equal(v2.signed.roles.root!.threshold, 2);
      assert.deepEqual(
        v2.signed.roles.root!.keyIDs,
        next.map((k) => tufKeyId(k)),
      );
      assert.equal(v2.signed.keys[tufKeyId(f.keys.root[0]!)], undefined);
    });

    it('is not signed by enough new keys to pass without them', async () => {
      const v2 = await root(f, 2);
      delete v2.signatures[tufKeyId(next[0]!)];
      delete v2.signatures[tufKeyId(next[1]!)];
      assert.throws(() => v2.verifyDelegate('root', v2));
    });

    it('verifies from 1.root.json', async () => {
      assert.equal((await verifyRepo(f.repo, { trustedRoot: trustedRoot() })).rootVersion, 2);
    });

    it('refuses the old root key alone for the next rotation', async () => {
      await assert.rejects(
        rotateKeys(f.repo, 'root', { rootKeys: f.keys.root, newKeys: [newKey()] }),
        (e) => isFerryError(e, 'REPO_SIGNING_KEYS'),
      );
    });

    describe('and then the targets key is rotated', () => {
      const targets = newKey();
      before(async () => {
        await rotateKeys(f.repo, 'targets', {
          rootKeys: next.slice(0, 2),
          newKeys: [targets],
          snapshotKey: f.keys.snapshot,
          timestampKey: f.keys.timestamp,
        });
      });

      it('moves the channels signed by the old targets key to the new one', async () => {
        assert.equal((await verifyRepo(f.repo, { trustedRoot: trustedRoot() })).rootVersion, 3);
        const v2 = await makeBundle(f, { version: '1.1.0', releaseCounter: 2, changedBlocks: [1] });
        await assert.rejects(
          publishBundle(f.repo, v2, { channel: 'stable', keyring: f.keyring, keys: f.signing }),
          (e) => isFerryError(e, 'REPO_SIGNING_KEYS'),
        );
        const keys = { ...f.signing, targets: [targets] };
        await publishBundle(f.repo, v2, { channel: 'stable', keyring: f.keyring, keys });
        await verifyRepo(f.repo, { trustedRoot: trustedRoot() });
      });
    });

    describe('and then the timestamp key is rotated', () => {
      const timestamp = newKey();
      before(async () => {
        await rotateKeys(f.repo, 'timestamp', {
          rootKeys: next.slice(1),
          newKeys: [timestamp],
          snapshotKey: f.keys.snapshot,
        });
      });

      it('signs with the new key, and refresh refuses the old one', async () => {
        await verifyRepo(f.repo, { trustedRoot: trustedRoot() });
        await assert.rejects(
          refresh(f.repo, { snapshotKey: f.keys.snapshot, timestampKey: f.keys.timestamp }),
          (e) => isFerryError(e, 'REPO_SIGNING_KEYS'),
        );
        await refresh(f.repo, { snapshotKey: f.keys.snapshot, timestampKey: timestamp });
      });
    });
  });
});

describe('delegateChannel', () => {
  let f: RepoFixture;
  before(async () => {
    f = await makeRepoFixture();
    await initRepo(f.repo, { keys: f.keys });
  });
  after(() => f.cleanup());

  describe('when a channel gets its own key', () => {
    it('publishes to it with that key alone, and not with the targets key', async () => {
      const ci = newKey();
      await delegateChannel(f.repo, { channel: 'nightly', channelKeys: [ci], keys: f.signing });
      const b = await makeBundle(f, { version: '0.1.0', releaseCounter: 1 });
      await assert.rejects(
        publishBundle(f.repo, b, { channel: 'nightly', keyring: f.keyring, keys: f.signing }),
        (e) => isFerryError(e, 'REPO_SIGNING_KEYS'),
      );
      const keys = {
        snapshot: f.keys.snapshot,
        timestamp: f.keys.timestamp,
        channels: { nightly: [ci] },
      };
      await publishBundle(f.repo, b, { channel: 'nightly', keyring: f.keyring, keys });
      const r = await verifyRepo(f.repo, { trustedRoot: join(f.repo, 'metadata/1.root.json') });
      assert.deepEqual(r.channels.nightly!.releases, ['acme-widget@0.1.0']);
    });
  });
});
