/**
 * Deployments end to end, through the commands a release engineer and a device run: `ferry image
 * build --tree`, a bundle signing the tree, `repo publish` storing its objects, nginx serving the
 * repository, and `ferry deploy update` on a device following it over TUF.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  createBundle,
  generateKeyPair,
  loadKeyring,
  parsePrivateKey,
  type PrivateKey,
} from '@ferry/core';
import { initRepo, publishBundle, type SigningKeys } from '@ferry/repo';
import { makeDevice, needs, startNginx, type DeviceFixture, type Nginx } from '@ferry/testing';

const caps = needs('sfdisk', 'nginx', 'root', 'mksquashfs', 'setfattr');
const FERRY = join(import.meta.dirname, '..', 'bin', 'ferry');
const newKey = (): PrivateKey => parsePrivateKey(generateKeyPair().privateKeyPem);

let work: DeviceFixture;
let nginx: Nginx;
let repo: string;
let signing: SigningKeys;

function ferry(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(FERRY, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** A small rootfs: release n changes one library and adds one tool; /etc has defaults. */
async function rootfs(n: number): Promise<string> {
  const dir = join(work.root, `tree-${n}`);
  for (const d of ['usr/bin', 'usr/lib', 'etc', 'var', 'boot'])
    await mkdir(join(dir, d), { recursive: true });
  await writeFile(join(dir, 'boot/vmlinuz-6.1.0-ferry'), 'a kernel\n');
  await writeFile(join(dir, 'boot/initrd.img-6.1.0-ferry'), 'an initramfs\n');
  await writeFile(join(dir, 'etc/os-release'), `VERSION_ID=${n}\n`);
  await writeFile(join(dir, 'etc/app.conf'), 'level = 1\n');
  for (let i = 0; i < 20; i++)
    await writeFile(join(dir, `usr/lib/lib${i}.so`), `shared library ${i}\n`.repeat(500));
  await writeFile(join(dir, 'usr/lib/libapp.so'), `app ${n}\n`.repeat(4000));
  await writeFile(join(dir, `usr/bin/tool-${n}`), `#!/bin/sh\necho ${n}\n`);
  return dir;
}

/** Builds, bundles and publishes release n with its tree; returns the rootfs dir. */
async function release(n: number): Promise<void> {
  const dir = await rootfs(n);
  const image = join(work.root, `rootfs-${n}.sqfs`);
  const built = await ferry([
    'image',
    'build',
    '--from',
    dir,
    '--out',
    image,
    '--tree',
    `${image}.tree`,
  ]);
  assert.equal(built.code, 0, built.stderr);
  const bundle = join(work.root, `release-${n}.fbd`);
  await createBundle({
    images: [{ name: 'rootfs', path: image, tree: `${image}.tree` }],
    compatible: 'test-board',
    version: `${n}.0.0`,
    releaseCounter: n,
    keys: [work.key],
    out: bundle,
  });
  const keyring = await loadKeyring(join(work.root, 'etc/ferry/keyring'));
  await publishBundle(repo, bundle, {
    channel: 'stable',
    keyring,
    keys: signing,
    trees: { rootfs: dir },
  });
}

/** Object and listing requests nginx served since log line `from`. */
async function treeGets(from: number): Promise<string[]> {
  return (await nginx.accessLog())
    .slice(from)
    .filter((l) => l.includes(' /repo/objects/') || l.includes(' /repo/trees/'));
}

before(async () => {
  if (caps.skip) return;
  work = await makeDevice({ slotMiB: 8 });
  repo = join(work.root, 'srv', 'repo');
  await mkdir(repo, { recursive: true });
  const keys = { root: [newKey()], targets: [newKey()], snapshot: newKey(), timestamp: newKey() };
  signing = { targets: keys.targets, snapshot: keys.snapshot, timestamp: keys.timestamp };
  await initRepo(repo, { keys });
  await release(1);
  nginx = await startNginx(join(work.root, 'srv'));
});
after(async () => {
  await nginx?.stop();
  await work?.cleanup();
});

describe('ferry deploy update from a repository', () => {
  it(
    'deploys the signed tree, then fetches only the objects the next release adds, keeping local /etc changes',
    caps,
    async () => {
      const d = await makeDevice({
        slotMiB: 8,
        extraToml: `[update]\nrepository = "${nginx.url}/repo"\n[deploy]\nkeep = 2\n`,
      });
      try {
        await d.trust(work, repo);
        const device = ['--root', d.root, '--json'];
        let log = (await nginx.accessLog()).length;
        const first = await ferry(['deploy', 'update', ...device]);
        assert.equal(first.code, 0, first.stderr);
        const firstGets = await treeGets(log);
        // 20 shared libraries + libapp + tool-1 + 2 etc files + kernel + initrd = 26 objects.
        assert.equal(firstGets.filter((l) => l.includes('/objects/')).length, 26);
        assert.equal(firstGets.filter((l) => l.includes('/trees/')).length, 1);
        let status = JSON.parse((await ferry(['deploy', 'status', ...device])).stdout) as {
          deployments: { id: string; release: { version: string }; isDefault?: boolean }[];
        };
        const d1 = status.deployments.find((x) => x.release.version === '1.0.0')!;
        assert.ok(d1);

        // The owner changes a setting in the running deployment's /etc.
        const store = join(d.root, 'var/lib/ferry/deploy');
        await writeFile(join(store, 'etc', d1.id, 'app.conf'), 'level = 7\n');

        await release(2);
        log = (await nginx.accessLog()).length;
        const second = await ferry(['deploy', 'update', ...device]);
        assert.equal(second.code, 0, second.stderr);
        const gets = await treeGets(log);
        const objects = gets.filter((l) => l.includes('/objects/'));
        // libapp.so, tool-2 and os-release changed: nothing else is fetched again.
        assert.equal(objects.length, 3, objects.join('\n'));
        // The listing came as a delta from the one the device holds, not whole.
        const listings = gets.filter((l) => l.includes('/trees/'));
        assert.equal(listings.length, 1, listings.join('\n'));
        assert.match(listings[0]!, /\/trees\/[0-9a-f]{64}\.from-[0-9a-f]{64}\.zst 200 /);
        status = JSON.parse((await ferry(['deploy', 'status', ...device])).stdout) as typeof status;
        const d2 = status.deployments.find((x) => x.release.version === '2.0.0')!;
        assert.ok(d2);
        assert.equal(await readFile(join(store, 'etc', d2.id, 'app.conf'), 'utf8'), 'level = 7\n');
        assert.equal(
          await readFile(join(store, 'etc', d2.id, 'os-release'), 'utf8'),
          'VERSION_ID=2\n',
        );
        assert.equal(
          await readFile(join(store, 'deployments', d2.id, 'usr/bin/tool-2'), 'utf8'),
          '#!/bin/sh\necho 2\n',
        );

        const again = await ferry(['deploy', 'update', ...device]);
        assert.equal(again.code, 0, again.stderr);
        status = JSON.parse((await ferry(['deploy', 'status', ...device])).stdout) as typeof status;
        assert.equal(status.deployments.length, 2);
      } finally {
        await d.cleanup();
      }
    },
  );

  it(
    "deploy install takes the tree from a bundle file, and refuses another device's bundle first",
    caps,
    async () => {
      const d = await makeDevice({ slotMiB: 8, compatible: 'other-board' });
      try {
        await d.trust(work);
        const device = ['--root', d.root, '--json'];
        const bundle = join(work.root, 'release-1.fbd');
        const refused = await ferry(['deploy', 'install', ...device, bundle]);
        assert.equal(refused.code, 1);
        assert.match(refused.stderr, /BUNDLE_INCOMPATIBLE/);
        const store = join(d.root, 'var/lib/ferry/deploy');
        assert.deepEqual(await readdir(join(store, 'objects', 'tmp')), []);
        assert.equal((await readdir(join(store, 'objects'))).length, 1); // tmp/ only

        // A device that boots deployments: the shared commands act on them.
        const ok = await makeDevice({
          slotMiB: 8,
          extraToml: '[deploy]\nboot = "systemd-boot"\nboot-dir = "/boot"\n',
        });
        try {
          await ok.trust(work);
          const okDevice = ['--root', ok.root, '--json'];
          const r = await ferry(['install', ...okDevice, bundle]);
          assert.equal(r.code, 0, r.stderr);
          const status = JSON.parse((await ferry(['status', ...okDevice])).stdout) as {
            deployments: { id: string; release: { version: string }; isDefault: boolean }[];
          };
          assert.deepEqual(
            status.deployments.map((x) => [x.release.version, x.isDefault]),
            [['1.0.0', true]],
          );
          const okStore = join(ok.root, 'var/lib/ferry/deploy');
          const id = status.deployments[0]!.id;
          assert.equal(
            await readFile(join(okStore, 'deployments', id, 'usr/bin/tool-1'), 'utf8'),
            '#!/bin/sh\necho 1\n',
          );
          const entries = await readdir(join(ok.root, 'boot/loader/entries'));
          assert.deepEqual(entries, [`ferry-${id}+3.conf`]);
          const back = await ferry(['rollback', ...okDevice]);
          assert.match(back.stderr, /ROLLBACK_NO_TARGET/);
          // The temporary image is gone and nothing stays mounted.
          assert.deepEqual(await readdir(join(okStore, 'objects', 'tmp')), []);
          assert.doesNotMatch(await readFile('/proc/self/mounts', 'utf8'), /ferry-bundle-/);
        } finally {
          await ok.cleanup();
        }
      } finally {
        await d.cleanup();
      }
    },
  );
});
