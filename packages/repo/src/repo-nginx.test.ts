import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Updater } from 'tuf-js';
import { needs, startNginx, type Nginx } from '@ferry/testing';
import { makeBundle, makeRepoFixture, newKey, type RepoFixture } from './fixtures/repo-fixture.ts';
import { initRepo } from './repo-init.ts';
import { rotateKeys } from './repo-keys.ts';
import { targetFile } from './repo-layout.ts';
import { publishBundle } from './repo-publish.ts';

describe('repository served by nginx', needs('nginx'), () => {
  let f: RepoFixture;
  let nginx: Nginx;
  let client: string;
  before(async () => {
    f = await makeRepoFixture();
    await initRepo(f.repo, { keys: f.keys });
    client = join(f.work, 'client');
    await mkdir(join(client, 'targets'), { recursive: true });
    // The device ships with the first root; the repository then moves on to root 2.
    await copyFile(join(f.repo, 'metadata/1.root.json'), join(client, 'root.json'));
    await rotateKeys(f.repo, 'root', {
      rootKeys: f.keys.root,
      newKeys: [newKey(), newKey()],
      threshold: 2,
    });
    const b = await makeBundle(f, { version: '1.0.0', releaseCounter: 7 });
    await publishBundle(f.repo, b, { channel: 'stable', keyring: f.keyring, keys: f.signing });
    nginx = await startNginx(f.repo);
  });
  after(async () => {
    await nginx?.stop();
    await f.cleanup();
  });

  describe("when tuf-js's Updater refreshes against it", () => {
    it('walks to root 2 and downloads a manifest target with its custom fields', async () => {
      const updater = new Updater({
        metadataDir: client,
        metadataBaseUrl: `${nginx.url}/metadata`,
        targetBaseUrl: `${nginx.url}/targets`,
        targetDir: join(client, 'targets'),
      });
      await updater.refresh();
      const path = 'channels/stable/acme-widget/1.0.0/manifest.json';
      const info = await updater.getTargetInfo(path);
      assert.ok(info);
      assert.deepEqual(info.custom, {
        compatible: 'acme-widget',
        version: '1.0.0',
        releaseCounter: 7,
      });
      const got = await updater.downloadTarget(info, join(client, 'targets', 'manifest.json'));
      assert.deepEqual(
        await readFile(got),
        await readFile(targetFile(f.repo, path, info.hashes.sha256!)),
      );
      const root = JSON.parse(await readFile(join(client, 'root.json'), 'utf8')) as {
        signed: { version: number };
      };
      assert.equal(root.signed.version, 2);
      assert.equal(
        await updater.getTargetInfo('channels/beta/acme-widget/1.0.0/manifest.json'),
        undefined,
      );
    });
  });
});
