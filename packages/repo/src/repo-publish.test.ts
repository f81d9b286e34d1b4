import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ChunkStore, FileSource, isFerryError, openBundle } from '@ferry/core';
import { makeBundle, makeRepoFixture, newKey, type RepoFixture } from './fixtures/repo-fixture.ts';
import { initRepo } from './repo-init.ts';
import { targetFile } from './repo-layout.ts';
import { promote } from './repo-promote.ts';
import { publishBundle, type PublishResult } from './repo-publish.ts';
import { refresh, renewTargets } from './repo-refresh.ts';
import { loadRepo } from './repo-state.ts';
import { listRepoReleases } from './release.ts';
import { verifyRepo } from './repo-verify.ts';
import { readTargetFile } from './target-file.ts';
import type { ChannelIndex } from './channel-index.ts';

async function chunkIds(path: string): Promise<Set<string>> {
  const src = new FileSource(path);
  try {
    const b = await openBundle(src);
    return new Set(b.payload.keys());
  } finally {
    await src.close();
  }
}

async function storeSize(dir: string): Promise<number> {
  let n = 0;
  for await (const _ of new ChunkStore(dir).list()) n++;
  return n;
}

describe('publishBundle', () => {
  let f: RepoFixture;
  let v1: string;
  let v2: string;
  let beta: string;
  let r1: PublishResult;
  let r2: PublishResult;
  const publish = (path: string, channel: string, force = false) =>
    publishBundle(f.repo, path, { channel, keyring: f.keyring, keys: f.signing, force });

  before(async () => {
    f = await makeRepoFixture();
    await initRepo(f.repo, { keys: f.keys });
    v1 = await makeBundle(f, { version: '1.0.0', releaseCounter: 1 });
    v2 = await makeBundle(f, { version: '1.1.0', releaseCounter: 2, changedBlocks: [3] });
    beta = await makeBundle(f, {
      version: '2.0.0-beta.1',
      releaseCounter: 3,
      changedBlocks: [5, 9],
    });
    r1 = await publish(v1, 'stable');
    r2 = await publish(v2, 'stable');
    await publish(beta, 'beta');
  });
  after(() => f.cleanup());

  describe('when two releases go to stable and one to beta', () => {
    it('lists each manifest target with its compatible, version and release counter', async () => {
      const state = await loadRepo(f.repo);
      const stable = state.roles.get('channel-stable')!.signed.targets;
      const t = stable['channels/stable/acme-widget/1.1.0/manifest.json']!;
      assert.deepEqual(t.custom, {
        compatible: 'acme-widget',
        version: '1.1.0',
        releaseCounter: 2,
      });
      assert.ok(stable['channels/stable/acme-widget/1.1.0/rootfs.cidx']);
      assert.equal(Object.keys(stable).length, 5);
      const betaTargets = state.roles.get('channel-beta')!.signed.targets;
      assert.deepEqual(Object.keys(betaTargets).sort(), [
        'channels/beta/acme-widget/2.0.0-beta.1/manifest.json',
        'channels/beta/acme-widget/2.0.0-beta.1/rootfs.cidx',
        'channels/beta/acme-widget/index/releases.json',
      ]);
    });

    it('lists both stable releases in the channel index, oldest first', async () => {
      const state = await loadRepo(f.repo);
      const t =
        state.roles.get('channel-stable')!.signed.targets[
          'channels/stable/acme-widget/index/releases.json'
        ]!;
      const index = JSON.parse((await readTargetFile(f.repo, t)).toString()) as ChannelIndex;
      assert.deepEqual(
        index.releases.map((r) => [r.version, r.releaseCounter, r.manifest]),
        [
          ['1.0.0', 1, 'channels/stable/acme-widget/1.0.0/manifest.json'],
          ['1.1.0', 2, 'channels/stable/acme-widget/1.1.0/manifest.json'],
        ],
      );
      assert.equal(
        index.releases[1]!.chunkIndexes.rootfs,
        'channels/stable/acme-widget/1.1.0/rootfs.cidx',
      );
    });

    it('delegates each channel to the targets keys for its own paths only', async () => {
      const d = (await loadRepo(f.repo)).targets.signed.delegations!;
      assert.deepEqual(d.roles!['channel-stable']!.paths, ['channels/stable/*/*/*']);
      assert.deepEqual(
        d.roles!['channel-beta']!.keyIDs,
        (await loadRepo(f.repo)).root.signed.roles.targets!.keyIDs,
      );
    });

    it('stores target files under hash-prefixed names', async () => {
      const t = (await loadRepo(f.repo)).roles.get('channel-stable')!.signed.targets[
        'channels/stable/acme-widget/1.0.0/manifest.json'
      ]!;
      const path = targetFile(f.repo, t.path, t.hashes.sha256!);
      assert.equal(
        path,
        join(
          f.repo,
          'targets/channels/stable/acme-widget/1.0.0',
          `${t.hashes.sha256}.manifest.json`,
        ),
      );
      assert.equal((await stat(path)).size, t.length);
    });

    it('adds to the shared chunk store only the chunks a release does not share', async () => {
      const ids1 = await chunkIds(v1);
      const ids2 = await chunkIds(v2);
      const fresh = [...ids2].filter((id) => !ids1.has(id)).length;
      assert.equal(r1.chunks.added, ids1.size);
      assert.ok(fresh > 0 && fresh < ids2.size / 2, `${fresh} of ${ids2.size} new`);
      assert.equal(r2.chunks.added, fresh);
      const all = new Set([...ids1, ...ids2, ...(await chunkIds(beta))]);
      assert.equal(await storeSize(f.repo), all.size);
    });

    it('leaves a repository that verifies', async () => {
      const r = await verifyRepo(f.repo, {
        trustedRoot: join(f.repo, 'metadata/1.root.json'),
        keyring: f.keyring,
      });
      assert.deepEqual(r.channels.stable!.releases, ['acme-widget@1.0.0', 'acme-widget@1.1.0']);
      assert.equal(r.targetFiles, 8);
    });
  });

  describe('when the same bundle is published again', () => {
    it('changes nothing', async () => {
      const before = (await loadRepo(f.repo)).timestamp.signed.version;
      const r = await publish(v2, 'stable');
      assert.equal(r.published, false);
      assert.equal(r.chunks.added, 0);
      assert.equal((await loadRepo(f.repo)).timestamp.signed.version, before);
    });
  });

  describe('when another bundle has a published compatible and version', () => {
    it('refuses with REPO_RELEASE_EXISTS', async () => {
      const other = await makeBundle(f, {
        version: '1.1.0',
        releaseCounter: 9,
        changedBlocks: [1],
      });
      await assert.rejects(publish(other, 'stable'), (e) => isFerryError(e, 'REPO_RELEASE_EXISTS'));
    });
  });

  describe('when the release counter is not above the channel highest', () => {
    it('refuses with REPO_RELEASE_COUNTER unless forced', async () => {
      const low = await makeBundle(f, { version: '1.0.1', releaseCounter: 2, changedBlocks: [2] });
      await assert.rejects(publish(low, 'stable'), (e) => isFerryError(e, 'REPO_RELEASE_COUNTER'));
      assert.equal((await publish(low, 'nightly', true)).published, true);
    });
  });

  describe('when the bundle is not signed by a key of the keyring', () => {
    it('refuses with the bundle error and publishes nothing', async () => {
      const rogue = await makeBundle(f, {
        version: '3.0.0',
        releaseCounter: 50,
        key: newKey(),
        compatible: 'rogue',
      });
      const before = await storeSize(f.repo);
      await assert.rejects(publish(rogue, 'stable'), (e) =>
        isFerryError(e, 'BUNDLE_UNKNOWN_SIGNER'),
      );
      assert.equal(await storeSize(f.repo), before);
    });
  });

  describe('when a release is promoted from beta to stable', () => {
    it('lists the same target bytes under stable, signed by the stable role', async () => {
      const r = await promote(f.repo, {
        release: 'acme-widget@2.0.0-beta.1',
        from: 'beta',
        to: 'stable',
        keys: f.signing,
      });
      assert.equal(r.promoted, true);
      const state = await loadRepo(f.repo);
      const src =
        state.roles.get('channel-beta')!.signed.targets[
          'channels/beta/acme-widget/2.0.0-beta.1/manifest.json'
        ]!;
      const dst =
        state.roles.get('channel-stable')!.signed.targets[
          'channels/stable/acme-widget/2.0.0-beta.1/manifest.json'
        ]!;
      assert.deepEqual(dst.hashes, src.hashes);
      assert.deepEqual(dst.custom, src.custom);
      const report = await verifyRepo(f.repo, {
        trustedRoot: join(f.repo, 'metadata/1.root.json'),
      });
      assert.equal(report.channels.stable!.releases.length, 3);
      const listed = await listRepoReleases(f.repo);
      assert.deepEqual(
        listed.filter((x) => x.channel === 'stable').map((x) => x.releaseCounter),
        [1, 2, 3],
      );
    });

    it('is idempotent', async () => {
      const r = await promote(f.repo, {
        release: 'acme-widget@2.0.0-beta.1',
        from: 'beta',
        to: 'stable',
        keys: f.signing,
      });
      assert.equal(r.promoted, false);
    });

    it('refuses an unknown release with REPO_RELEASE_NOT_FOUND', async () => {
      await assert.rejects(
        promote(f.repo, {
          release: 'acme-widget@9.9.9',
          from: 'beta',
          to: 'stable',
          keys: f.signing,
        }),
        (e) => isFerryError(e, 'REPO_RELEASE_NOT_FOUND'),
      );
    });
  });
});

describe('refresh', () => {
  let f: RepoFixture;
  before(async () => {
    f = await makeRepoFixture();
    await initRepo(f.repo, { keys: f.keys });
  });
  after(() => f.cleanup());

  describe('when run with the online keys', () => {
    it('bumps the snapshot and timestamp versions and expiry', async () => {
      const old = await loadRepo(f.repo);
      const later = new Date(Date.now() + 3_600_000);
      const r = await refresh(f.repo, {
        snapshotKey: f.keys.snapshot,
        timestampKey: f.keys.timestamp,
        now: later,
      });
      assert.equal(r.snapshotVersion, old.snapshot.signed.version + 1);
      assert.equal(r.timestampVersion, old.timestamp.signed.version + 1);
      assert.ok(Date.parse(r.timestampExpires) > Date.parse(old.timestamp.signed.expires));
      await verifyRepo(f.repo, { trustedRoot: join(f.repo, 'metadata/1.root.json'), now: later });
    });
  });

  describe('when a key is not the one root names', () => {
    it('refuses with REPO_SIGNING_KEYS', async () => {
      await assert.rejects(
        refresh(f.repo, { snapshotKey: f.keys.snapshot, timestampKey: newKey() }),
        (e) => isFerryError(e, 'REPO_SIGNING_KEYS'),
      );
    });
  });
});

describe('renewTargets', () => {
  let f: RepoFixture;
  before(async () => {
    f = await makeRepoFixture();
    await initRepo(f.repo, { keys: f.keys });
    const b = await makeBundle(f, { version: '1.0.0', releaseCounter: 1 });
    await publishBundle(f.repo, b, { channel: 'stable', keyring: f.keyring, keys: f.signing });
  });
  after(() => f.cleanup());

  describe('when targets would expire', () => {
    it('re-signs targets and every channel with a fresh expiry', async () => {
      const old = await loadRepo(f.repo);
      const later = new Date(Date.now() + 80 * 86_400_000);
      await renewTargets(f.repo, { keys: f.signing, now: later });
      const now = await loadRepo(f.repo);
      assert.equal(now.targets.signed.version, old.targets.signed.version + 1);
      const stable = now.roles.get('channel-stable')!.signed;
      assert.equal(stable.version, old.roles.get('channel-stable')!.signed.version + 1);
      assert.ok(Date.parse(stable.expires) > later.getTime() + 89 * 86_400_000);
      await verifyRepo(f.repo, {
        trustedRoot: join(f.repo, 'metadata/1.root.json'),
        now: new Date(later.getTime() + 3_600_000),
      });
    });
  });
});
