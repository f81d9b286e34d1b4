import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { zstdCompressSync } from 'node:zlib';
import { join } from 'node:path';
import { Agent, type FileBootloader } from '@ferry/agent';
import {
  generateKeyPair,
  isFerryError,
  loadKeyring,
  parsePrivateKey,
  type PrivateKey,
} from '@ferry/core';
import { initRepo, publishBundle, type SigningKeys } from '@ferry/repo';
import {
  imageLikeBytes,
  makeDevice,
  needs,
  startNginx,
  type DeviceFixture,
  type Nginx,
} from '@ferry/testing';

const caps = needs('sfdisk', 'nginx', 'root');
const FERRY = join(import.meta.dirname, '..', 'bin', 'ferry');
const MiB = 1024 * 1024;

const newKey = (): PrivateKey => parsePrivateKey(generateKeyPair().privateKeyPem);

let work: DeviceFixture;
let nginx: Nginx;
let repo: string;
let signing: SigningKeys;
const images: Record<string, Buffer> = {};
const bundles: Record<string, string> = {};

/** A device following the repository on nginx, booted from B holding 1.0.0 (installed). */
async function device(extra = '', url = nginx.url + '/repo'): Promise<DeviceFixture> {
  const d = await makeDevice({
    slotMiB: 8,
    extraToml: `[update]\nrepository = "${url}"\n${extra}`,
  });
  await d.trust(work, repo);
  await (await Agent.open({ root: d.root })).install(bundles['1.0.0']!);
  assert.equal(
    await ((await Agent.open({ root: d.root })).bootloader as FileBootloader).boot(),
    'B',
  );
  await d.boot('B');
  await (await Agent.open({ root: d.root })).mark('booted', 'good');
  return d;
}

/** Chunk requests nginx served (or refused) since `from` log lines. */
async function chunkGets(from = 0): Promise<string[]> {
  return (await nginx.accessLog()).slice(from).filter((l) => l.includes(' /repo/chunks/'));
}

before(async () => {
  if (caps.skip) return;
  work = await makeDevice({ slotMiB: 8 });
  repo = join(work.root, 'srv', 'repo');
  await mkdir(repo, { recursive: true });
  const keys = { root: [newKey()], targets: [newKey()], snapshot: newKey(), timestamp: newKey() };
  signing = { targets: keys.targets, snapshot: keys.snapshot, timestamp: keys.timestamp };
  await initRepo(repo, { keys });
  const v1 = imageLikeBytes(6 * MiB, 71);
  const v2 = Buffer.from(v1);
  imageLikeBytes(2 * MiB, 72).copy(v2, 2 * MiB); // 2 MiB of 6 change
  const v3 = imageLikeBytes(6 * MiB, 73); // nothing shared
  Object.assign(images, { '1.0.0': v1, '1.1.0': v2, '2.0.0-beta.1': v3 });
  let counter = 0;
  for (const [version, img] of Object.entries(images)) {
    const path = join(work.root, `${version}.img`);
    await writeFile(path, img);
    bundles[version] = await work.bundle(path, { version, counter: ++counter });
  }
  const keyring = await loadKeyring(join(work.root, 'etc/ferry/keyring'));
  for (const v of ['1.0.0', '1.1.0'])
    await publishBundle(repo, bundles[v]!, { channel: 'stable', keyring, keys: signing });
  await publishBundle(repo, bundles['2.0.0-beta.1']!, { channel: 'beta', keyring, keys: signing });
  nginx = await startNginx(join(work.root, 'srv'));
});
after(async () => {
  await nginx?.stop();
  await work?.cleanup();
});

describe('ferry check and update', () => {
  describe('when the channel has a newer release than the booted one', () => {
    it('check reports it without writing a slot', caps, async () => {
      const d = await device();
      try {
        const before = await d.digest('rootA');
        const c = await (await Agent.open({ root: d.root })).check();
        assert.equal(c.channel, 'stable');
        assert.deepEqual(c.current, { version: '1.0.0', releaseCounter: 1 });
        assert.equal(c.latest?.version, '1.1.0');
        assert.equal(c.available, true);
        assert.equal(await d.digest('rootA'), before);
      } finally {
        await d.cleanup();
      }
    });

    it(
      'update fetches only the chunks the device lacks, each once, and commits',
      caps,
      async () => {
        const d = await device();
        try {
          const from = (await nginx.accessLog()).length;
          const r = await (await Agent.open({ root: d.root })).update();
          assert.equal(r.installed?.version, '1.1.0');
          assert.equal(r.installed?.target, 'rootfs.0');
          assert.equal(r.staged, false);
          const gets = await chunkGets(from);
          assert.ok(
            gets.every((l) => / 200 /.test(l)),
            gets.join('\n'),
          );
          assert.equal(
            new Set(gets.map((l) => l.split(' ')[1])).size,
            gets.length,
            'no chunk twice',
          );
          // About a third of the image changed; the rest comes from slot B.
          assert.ok(r.installed.seededBytes >= 3 * MiB, `seeded ${r.installed.seededBytes}`);
          assert.ok(r.installed.fetchedBytes <= 3 * MiB, `fetched ${r.installed.fetchedBytes}`);
          assert.ok(gets.length > 0);
          const agent = await Agent.open({ root: d.root });
          const st = await agent.status();
          assert.equal(st.pendingSlot, 'rootfs.0');
          assert.equal(await agent.bootloader.getPrimary(), 'A');
          const again = await agent.check();
          assert.equal(again.available, false);
          assert.equal(again.ready, 'pending');
        } finally {
          await d.cleanup();
        }
      },
    );
  });

  describe('when update runs with --stage', () => {
    it(
      'writes and verifies the slot, leaves the bootloader, and activate commits',
      caps,
      async () => {
        const d = await device();
        try {
          const r = await runFerry(['update', '--stage', '--json', '--root', d.root]);
          assert.equal(r.code, 0, r.stderr);
          const agent = await Agent.open({ root: d.root });
          assert.equal(await agent.bootloader.getPrimary(), 'B');
          assert.equal((await agent.status()).stagedSlot, 'rootfs.0');
          assert.equal((await agent.check()).ready, 'staged');
          const a = await runFerry(['activate', '--json', '--root', d.root]);
          assert.equal(a.code, 0, a.stderr);
          assert.equal(await (await Agent.open({ root: d.root })).bootloader.getPrimary(), 'A');
          const none = await runFerry(['activate', '--json', '--root', d.root]);
          assert.equal(none.code, 1);
          assert.match(none.stdout + none.stderr, /UPDATE_NOTHING_STAGED/);
        } finally {
          await d.cleanup();
        }
      },
    );
  });

  describe('when the device is rebased to beta', () => {
    it('follows the beta channel from the next check on', caps, async () => {
      const d = await device();
      try {
        const r = await runFerry(['rebase', 'beta', '--root', d.root]);
        assert.equal(r.code, 0, r.stderr);
        const c = await (await Agent.open({ root: d.root })).check();
        assert.equal(c.channel, 'beta');
        assert.equal(c.latest?.version, '2.0.0-beta.1');
      } finally {
        await d.cleanup();
      }
    });
  });

  describe('when the device has another compatible', () => {
    it('finds no release (UPDATE_NO_RELEASE) and writes nothing', caps, async () => {
      const d = await device();
      try {
        const toml = join(d.root, 'etc/ferry/system.toml');
        await writeFile(
          toml,
          (await readFile(toml, 'utf8')).replace(
            /compatible = "[^"]*"/,
            'compatible = "other-board"',
          ),
        );
        await assert.rejects((await Agent.open({ root: d.root })).update(), (e) =>
          isFerryError(e, 'UPDATE_NO_RELEASE'),
        );
      } finally {
        await d.cleanup();
      }
    });
  });

  describe('when the process is killed mid-download', () => {
    it(
      'a re-run fetches only what was not written: never a verified chunk again',
      caps,
      async () => {
        // 1 MiB/s over one connection: the 6 MiB of beta take about 6 s; the kill lands at 2 MiB.
        const d = await device('bandwidth = 1048576\nparallel = 1\nchannel = "beta"\n');
        try {
          const child = spawn(FERRY, ['update', '--json', '--root', d.root], {
            stdio: ['ignore', 'pipe', 'ignore'],
          });
          const exited = new Promise((r) => child.on('exit', r));
          let killedAt = 0;
          let buf = '';
          child.stdout.on('data', (b: Buffer) => {
            buf += b.toString();
            for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
              const e = JSON.parse(buf.slice(0, nl)) as { id: string; done?: number };
              buf = buf.slice(nl + 1);
              if (!killedAt && e.id === 'install.progress' && e.done! >= 2 * MiB) {
                killedAt = e.done!;
                child.kill('SIGKILL');
              }
            }
          });
          await exited;
          const size = images['2.0.0-beta.1']!.length;
          assert.ok(killedAt >= 2 * MiB && killedAt < size, `killed at ${killedAt}`);
          const r = await (await Agent.open({ root: d.root })).update();
          assert.equal(r.installed?.version, '2.0.0-beta.1');
          // Every byte the killed run reported written is reused; only the rest is fetched.
          assert.ok(
            r.installed.fetchedBytes <= size - killedAt,
            `re-run fetched ${r.installed.fetchedBytes} of ${size}; ${killedAt} were written before the kill`,
          );
          assert.ok(r.installed.presentBytes + r.installed.seededBytes >= killedAt);
          const want = createHash('sha256').update(images['2.0.0-beta.1']!).digest('hex');
          const st = await (await Agent.open({ root: d.root })).status();
          assert.equal(st.slots.find((s) => s.name === 'rootfs.0')?.record?.image?.sha256, want);
        } finally {
          await d.cleanup();
        }
      },
    );
  });
});

describe('ferry daemon against the repository', () => {
  describe('when it runs with install = "auto" and reboot = "never"', () => {
    it(
      'installs the newest release by itself, and the CLI talks to it over the socket',
      caps,
      async () => {
        const d = await device(
          '\n[daemon]\nsocket = "/run/ferry/ferry.sock"\ninterval = 3600\njitter = 0\ninstall = "auto"\nreboot = "never"\n',
        );
        const daemon = spawn(FERRY, ['daemon', '--root', d.root], { stdio: 'ignore' });
        const exited = new Promise((r) => daemon.on('exit', r));
        try {
          const t0 = Date.now();
          let pending: string | undefined;
          while (!pending && Date.now() - t0 < 120_000) {
            await new Promise((r) => setTimeout(r, 500));
            const st = await runFerry(['status', '--json', '--root', d.root]);
            if (st.code !== 0) continue;
            const j = JSON.parse(st.stdout) as { pendingSlot?: string; daemon?: unknown };
            assert.ok(j.daemon, 'status answered through the daemon');
            pending = j.pendingSlot;
          }
          assert.equal(pending, 'rootfs.0');
          const agent = await Agent.open({ root: d.root });
          assert.equal(await agent.bootloader.getPrimary(), 'A');
          const again = await runFerry(['update', '--json', '--root', d.root]);
          assert.equal(again.code, 0, again.stderr);
          // Events come first, one compact JSON line each; the result is the final document.
          const out = again.stdout;
          const at = out.startsWith('{\n') ? 0 : out.lastIndexOf('\n{\n') + 1;
          const result = JSON.parse(out.slice(at)) as { id: string; installed?: unknown };
          assert.equal(result.id, 'update.result');
          assert.equal(result.installed, undefined, 'nothing newer: the daemon installs nothing');
        } finally {
          daemon.kill('SIGTERM');
          await exited;
          await d.cleanup();
        }
      },
    );
  });
});

describe('fetch limits on the update path', () => {
  /** A repository proxy that misbehaves on chunk requests. */
  async function evilProxy(
    mode: 'endless' | 'slow' | 'drop' | 'swap',
  ): Promise<{ url: string; close(): Promise<void> }> {
    const server = http.createServer((req, res) => {
      if (req.url?.includes('/chunks/')) {
        if (mode === 'endless') {
          res.writeHead(200);
          const junk = Buffer.alloc(64 * 1024, 7);
          const pump = () => {
            while (res.write(junk));
          };
          res.on('drain', pump);
          pump();
          res.on('close', () => res.off('drain', pump));
          return;
        }
        if (mode === 'swap') {
          // A valid zstd frame of other bytes: what a compromised mirror would serve.
          return void res.end(zstdCompressSync(imageLikeBytes(64 * 1024, 99)));
        }
        if (mode === 'slow') {
          res.writeHead(200);
          const t = setInterval(() => res.write('x'), 1000);
          res.on('close', () => clearInterval(t));
          return;
        }
        req.socket.destroy();
        return;
      }
      http.get(`${nginx.url}${req.url}`, (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    return {
      url: `http://127.0.0.1:${port}/repo`,
      close: () =>
        new Promise((r) => {
          server.closeAllConnections();
          server.close(() => r());
        }),
    };
  }

  for (const [mode, code, extra] of [
    ['endless', 'FETCH_TOO_LARGE', ''],
    ['slow', 'FETCH_TIMEOUT', 'timeout = 2\n'],
    ['drop', 'FETCH_FAILED', ''],
    ['swap', 'CHUNK_HASH_MISMATCH', ''],
  ] as const)
    describe(`when the chunk server is ${mode}`, () => {
      it(
        `refuses with ${code} and leaves the booted slot and the primary alone`,
        caps,
        async () => {
          const proxy = await evilProxy(mode);
          const d = await device(extra, proxy.url);
          try {
            const booted = await d.digest('rootB');
            await assert.rejects((await Agent.open({ root: d.root })).update(), (e) =>
              isFerryError(e, code),
            );
            const agent = await Agent.open({ root: d.root });
            assert.equal(await agent.bootloader.getPrimary(), 'B');
            assert.equal(await d.digest('rootB'), booted);
            assert.equal((await agent.status()).lastInstall?.error?.code, code);
          } finally {
            await d.cleanup();
            await proxy.close();
          }
        },
      );
    });
});

function runFerry(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(FERRY, args);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('exit', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}
