/**
 * Release import from a real signed repository, made with the real `ferry` CLI (key generate,
 * bundle create, repo init, repo publish): the server reads and verifies it, and refuses it
 * once a channel role is tampered with.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
  mkdirSync,
  copyFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { imageLikeBytes } from '@ferry/testing';
import { readRepositoryReleases } from './repository.ts';
import { startHarness } from './test-harness.ts';

const FERRY = join(import.meta.dirname, '..', '..', 'cli', 'bin', 'ferry');
const ferry = (...args: string[]) => execFileSync(FERRY, args, { stdio: 'pipe' });

describe('readRepositoryReleases', () => {
  let dir: string;
  let repo: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-server-repo-'));
    repo = join(dir, 'repo');
    for (const k of ['root', 'targets', 'snapshot', 'timestamp', 'release'])
      ferry('key', 'generate', join(dir, 'keys', k));
    mkdirSync(join(dir, 'keyring'));
    copyFileSync(join(dir, 'keys', 'release.pub'), join(dir, 'keyring', 'release.pub'));
    writeFileSync(join(dir, 'rootfs.img'), imageLikeBytes(256 * 1024, 7));
    const k = (n: string) => join(dir, 'keys', `${n}.key`);
    const roles = [
      '--targets-key',
      k('targets'),
      '--snapshot-key',
      k('snapshot'),
      '--timestamp-key',
      k('timestamp'),
    ];
    ferry('repo', 'init', '--root-key', k('root'), ...roles, repo);
    ferry(
      'bundle',
      'create',
      '--image',
      `rootfs=${join(dir, 'rootfs.img')}`,
      '--compatible',
      'acme-widget',
      '--version',
      '1.4.0',
      '--release-counter',
      '14',
      '--key',
      k('release'),
      '--out',
      join(dir, 'b.fbd'),
    );
    ferry(
      'repo',
      'publish',
      '--channel',
      'beta',
      '--keyring',
      join(dir, 'keyring'),
      ...roles,
      repo,
      join(dir, 'b.fbd'),
    );
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  describe('when the repository verifies', () => {
    it('lists each channel release with its signed custom fields', async () => {
      const rs = await readRepositoryReleases(repo);
      assert.equal(rs.length, 1);
      assert.equal(rs[0]!.channel, 'beta');
      assert.equal(rs[0]!.releaseCounter, 14);
      assert.equal(rs[0]!.manifestPath, 'channels/beta/acme-widget/1.4.0/manifest.json');
      assert.match(rs[0]!.manifestSha256, /^[0-9a-f]{64}$/);
    });
    it('is imported by an operator through the admin API and served at /repo/', async () => {
      const h = await startHarness(join(dir, 'fleet.db'), { repository: { source: repo } });
      try {
        const r = await h.admin.post<{ added: number }>('/api/v1/releases/import');
        assert.equal(r.added, 1);
        assert.equal((await h.admin.post<{ added: number }>('/api/v1/releases/import')).added, 0);
        const ts = await fetch(`${h.url}/repo/metadata/timestamp.json`);
        assert.equal(ts.status, 200);
        assert.equal((await fetch(`${h.url}/repo/../../etc/passwd`)).status, 404);
      } finally {
        await h.close();
      }
    });
  });

  describe('when a channel role is tampered with', () => {
    it('refuses the repository with SERVER_REPOSITORY', async () => {
      const meta = join(repo, 'metadata');
      const file = join(
        meta,
        readdirSync(meta).find((f) => f.endsWith('.channel-beta.json'))!,
      );
      const original = readFileSync(file, 'utf8');
      try {
        writeFileSync(file, original.replace('"releaseCounter":14', '"releaseCounter":99'));
        await assert.rejects(readRepositoryReleases(repo), { code: 'SERVER_REPOSITORY' });
      } finally {
        writeFileSync(file, original);
      }
    });
    it('refuses a root the operator does not trust', async () => {
      const other = mkdtempSync(join(tmpdir(), 'ferry-other-root-'));
      try {
        ferry('key', 'generate', join(other, 'r'));
        const k = join(other, 'r.key');
        ferry(
          'repo',
          'init',
          '--root-key',
          k,
          '--targets-key',
          k,
          '--snapshot-key',
          k,
          '--timestamp-key',
          k,
          join(other, 'repo'),
        );
        const foreignRoot = readFileSync(join(other, 'repo', 'metadata', '1.root.json'));
        await assert.rejects(readRepositoryReleases(repo, foreignRoot), {
          code: 'SERVER_REPOSITORY',
        });
      } finally {
        rmSync(other, { recursive: true, force: true });
      }
    });
  });
});
