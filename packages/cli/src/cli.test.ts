import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { imageLikeBytes, needs, tempDir } from '@ferry/testing';
import { COMMANDS } from './commands.ts';
import { cliReference } from './help.ts';

const bin = join(import.meta.dirname, '..', 'bin', 'ferry');
const repo = join(import.meta.dirname, '..', '..', '..');
let dir: string;
let cleanup: () => Promise<void>;

function ferry(...args: string[]) {
  const r = spawnSync(bin, args, { encoding: 'utf8', cwd: dir });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

before(async () => {
  ({ dir, cleanup } = await tempDir('ferry-cli-'));
});
after(() => cleanup());

describe('ferry CLI', () => {
  describe('when asked for help', () => {
    it('prints usage for every command and exits 0', () => {
      for (const c of COMMANDS) {
        const r = ferry(...c.name.split(' '), '--help');
        assert.equal(r.status, 0, c.name);
        assert.match(r.stdout, new RegExp(`^Usage: ferry ${c.name}`), c.name);
      }
      assert.match(ferry('--help').stdout, /bundle create/);
    });
    it('keeps docs/cli.md in step with the command table', async () => {
      assert.equal(
        await readFile(join(repo, 'docs', 'cli.md'), 'utf8'),
        cliReference(COMMANDS),
        'run npm run docs:cli',
      );
    });
  });

  describe('when started by its launcher', () => {
    it("keeps Node's compile cache in the checkout, or where NODE_COMPILE_CACHE says", async () => {
      const env: NodeJS.ProcessEnv = { ...process.env };
      delete env.NODE_COMPILE_CACHE;
      delete env.NODE_DISABLE_COMPILE_CACHE;
      const start = (extra: Record<string, string>) =>
        spawnSync(bin, ['--help'], { env: { ...env, ...extra }, encoding: 'utf8' }).status;
      const entries = (d: string) => readdir(d, { recursive: true }).catch(() => []);
      const chosen = join(dir, 'compile-cache');
      assert.equal(start({ NODE_COMPILE_CACHE: chosen, NODE_DISABLE_COMPILE_CACHE: '1' }), 0);
      assert.deepEqual(await entries(chosen), [], 'nothing is cached when the cache is off');
      assert.equal(start({ NODE_COMPILE_CACHE: chosen }), 0);
      assert.ok((await entries(chosen)).length > 1, 'entries where NODE_COMPILE_CACHE says');
      assert.equal(start({}), 0);
      const own = await entries(join(repo, '.cache', 'node-compile-cache'));
      assert.ok(own.length > 1, 'by default, entries in the checkout');
    });
  });

  describe('when used wrongly', () => {
    it('prints one line with USAGE and exits 2', () => {
      const r = ferry('bundle', 'create', '--bogus');
      assert.equal(r.status, 2);
      assert.match(r.stderr, /^ferry: error\[USAGE\]: .+\n$/);
      assert.equal(ferry('frobnicate').status, 2);
    });
  });

  describe('when creating and checking a bundle', () => {
    it('generates keys, creates, shows and verifies, refusing a wrong keyring in one line', async () => {
      await writeFile(join(dir, 'rootfs.img'), imageLikeBytes(600_000, 3));
      const k = ferry('key', 'generate', '--json', 'keys/a');
      assert.equal(k.status, 0, k.stderr);
      const keyId = (JSON.parse(k.stdout) as { keyId: string }).keyId;
      assert.match(keyId, /^[0-9a-f]{64}$/);
      assert.equal(ferry('key', 'generate', 'keys/a').status, 1, 'refuses to overwrite a key');
      const c = ferry(
        'bundle',
        'create',
        '--image',
        'rootfs=rootfs.img',
        '--compatible',
        'board-x',
        '--version',
        '2.0.0',
        '--release-counter',
        '5',
        '--key',
        'keys/a.key',
        '--out',
        'r.fbd',
        '--json',
      );
      assert.equal(c.status, 0, c.stderr);
      const info = JSON.parse(ferry('bundle', 'info', '--json', 'r.fbd').stdout) as {
        manifest: { compatible: string; releaseCounter: number };
        signatures: string[];
      };
      assert.equal(info.manifest.compatible, 'board-x');
      assert.equal(info.manifest.releaseCounter, 5);
      assert.deepEqual(info.signatures, [keyId]);
      const v = ferry('bundle', 'verify', '--keyring', 'keys/a.pub', 'r.fbd');
      assert.equal(v.status, 0, v.stderr);
      assert.match(v.stdout, /^verified /);
      await mkdir(join(dir, 'other'));
      ferry('key', 'generate', 'other/b');
      const bad = ferry('bundle', 'verify', '--keyring', 'other/b.pub', 'r.fbd');
      assert.equal(bad.status, 1);
      assert.match(bad.stderr, /^ferry: error\[BUNDLE_UNKNOWN_SIGNER\]: [^\n]+\n$/);
      const badJson = ferry('bundle', 'verify', '--json', '--keyring', 'other/b.pub', 'r.fbd');
      assert.equal(
        (JSON.parse(badJson.stdout) as { error: { code: string } }).error.code,
        'BUNDLE_UNKNOWN_SIGNER',
      );
    });
  });

  describe('when building an image', () => {
    it('builds a squashfs from a directory', needs('mksquashfs'), async () => {
      await mkdir(join(dir, 'tree/etc'), { recursive: true });
      await writeFile(join(dir, 'tree/etc/hostname'), 'demo\n');
      const r = ferry(
        'image',
        'build',
        '--from',
        'tree',
        '--format',
        'squashfs',
        '--out',
        'tree.sqfs',
        '--json',
      );
      assert.equal(r.status, 0, r.stderr);
      const head = await readFile(join(dir, 'tree.sqfs'));
      assert.equal(head.toString('latin1', 0, 4), 'hsqs');
    });
  });

  describe('when running the demo (the main job)', () => {
    it(
      'builds, signs and verifies two releases and finds most of v2 in v1',
      needs('mksquashfs'),
      () => {
        const r = ferry('demo', '--dir', 'demo', '--json');
        assert.equal(r.status, 0, r.stderr);
        const s = JSON.parse(r.stdout) as {
          verified: string[];
          update: {
            chunks: number;
            missingChunks: number;
            downloadBytes: number;
            fullBytes: number;
          };
        };
        assert.deepEqual(s.verified, ['rootfs']);
        assert.ok(
          s.update.missingChunks > 0 && s.update.missingChunks < s.update.chunks / 2,
          JSON.stringify(s.update),
        );
        assert.ok(s.update.downloadBytes < s.update.fullBytes / 2);
        const steps = (
          JSON.parse(r.stdout) as {
            device: {
              steps: Array<{
                target: string;
                booted: string;
                check: string;
                seededBytes: number;
                fetchedBytes: number;
              }>;
            };
          }
        ).device.steps;
        assert.deepEqual(
          steps.map((x) => [x.target, x.booted, x.check]),
          [
            ['rootfs.1', 'B', 'good'],
            ['rootfs.0', 'A', 'good'],
          ],
        );
        assert.ok(
          steps[1]!.seededBytes > 2 * steps[1]!.fetchedBytes,
          'the update comes mostly from the other slot',
        );
        const st = ferry('status', '--json', '--root', 'demo/device');
        assert.equal(st.status, 0, st.stderr);
        assert.equal((JSON.parse(st.stdout) as { highWaterCounter: number }).highWaterCounter, 2);
      },
    );
  });

  describe('when running a repository', () => {
    it('inits, publishes a bundle into a channel, refreshes, verifies and collects garbage', async () => {
      for (const k of ['root', 'targets', 'snapshot', 'timestamp', 'release'])
        assert.equal(ferry('key', 'generate', `rk/${k}`).status, 0);
      const keys = [
        '--targets-key',
        'rk/targets.key',
        '--snapshot-key',
        'rk/snapshot.key',
        '--timestamp-key',
        'rk/timestamp.key',
      ];
      const init = ferry('repo', 'init', '--root-key', 'rk/root.key', ...keys, 'repo');
      assert.equal(init.status, 0, init.stderr);
      await writeFile(join(dir, 'r1.img'), imageLikeBytes(300_000, 61));
      const bundle = (version: string, counter: string, out: string) =>
        ferry(
          'bundle',
          'create',
          '--image',
          'rootfs=r1.img',
          '--compatible',
          'board',
          '--version',
          version,
          '--release-counter',
          counter,
          '--key',
          'rk/release.key',
          '--out',
          out,
        );
      const publish = (file: string) =>
        ferry(
          'repo',
          'publish',
          '--json',
          '--channel',
          'beta',
          '--keyring',
          'rk/release.pub',
          ...keys,
          'repo',
          file,
        );
      assert.equal(bundle('1.0.0', '1', 'r1.fbd').status, 0);
      const pub = publish('r1.fbd');
      assert.equal(pub.status, 0, pub.stderr);
      const p = JSON.parse(pub.stdout) as {
        published: boolean;
        chunks: { added: number; total: number };
      };
      assert.ok(p.published && p.chunks.added === p.chunks.total && p.chunks.total > 0);
      const again = JSON.parse(publish('r1.fbd').stdout) as { published: boolean };
      assert.equal(again.published, false, 'publishing the same release twice changes nothing');
      assert.equal(bundle('0.9.0', '0', 'r0.fbd').status, 0);
      const down = publish('r0.fbd');
      assert.equal(down.status, 1);
      assert.match(down.stderr, /^ferry: error\[REPO_RELEASE_COUNTER\]/);
      assert.equal(
        ferry(
          'repo',
          'refresh',
          '--snapshot-key',
          'rk/snapshot.key',
          '--timestamp-key',
          'rk/timestamp.key',
          'repo',
        ).status,
        0,
      );
      const v = ferry('repo', 'verify', '--keyring', 'rk/release.pub', 'repo');
      assert.equal(v.status, 0, v.stderr);
      const g = JSON.parse(ferry('repo', 'gc', '--json', '--dry-run', 'repo').stdout) as {
        deleted: number;
        kept: number;
      };
      assert.deepEqual([g.deleted, g.kept > 0], [0, true]);
      // Root rotation to a 2-of-3 root: a device holding root 1 still verifies the repository.
      for (const k of ['r1', 'r2', 'r3'])
        assert.equal(ferry('key', 'generate', `rk/${k}`).status, 0);
      const online = ['--snapshot-key', 'rk/snapshot.key', '--timestamp-key', 'rk/timestamp.key'];
      const rot = ferry(
        'repo',
        'keys',
        'rotate',
        '--json',
        '--root-key',
        'rk/root.key',
        '--new-key',
        'rk/r1.key',
        '--new-key',
        'rk/r2.key',
        '--new-key',
        'rk/r3.key',
        '--threshold',
        '2',
        ...online,
        'repo',
        'root',
      );
      assert.equal(rot.status, 0, rot.stderr);
      const rr = JSON.parse(rot.stdout) as { rootVersion: number; keyIds: string[] };
      assert.deepEqual([rr.rootVersion, rr.keyIds.length], [2, 3]);
      assert.equal(ferry('repo', 'verify', 'repo').status, 0, 'root 1 walks to root 2');
      const bad = ferry(
        'repo',
        'keys',
        'rotate',
        '--root-key',
        'rk/root.key',
        '--new-key',
        'rk/r1.key',
        ...online,
        'repo',
        'root',
      );
      assert.equal(bad.status, 1, 'the old root key alone no longer meets the root threshold');
      assert.match(bad.stderr, /REPO_SIGNING_KEYS/);
    });
  });
});
