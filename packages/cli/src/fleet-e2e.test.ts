import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  Agent,
  Daemon,
  FleetSession,
  listenDaemonApi,
  loadFleetState,
  type FileBootloader,
} from '@ferry/agent';
import {
  FerryError,
  generateKeyPair,
  isFerryError,
  loadKeyring,
  parsePrivateKey,
  type PrivateKey,
} from '@ferry/core';
import { initRepo, publishBundle } from '@ferry/repo';
import {
  AdminClient,
  Director,
  createServer,
  importReleases,
  openDatabase,
  type FleetServer,
} from '@ferry/server';
import { imageLikeBytes, makeDevice, needs, type DeviceFixture } from '@ferry/testing';

const caps = needs('sfdisk', 'root');
const FERRY = join(import.meta.dirname, '..', 'bin', 'ferry');
const MiB = 1024 * 1024;
const run = promisify(execFile);

const newKey = (): PrivateKey => parsePrivateKey(generateKeyPair().privateKeyPem);

let work: DeviceFixture;
let repo: string;
const bundles: Record<string, string> = {};
/** The director key devices trust (its public half is in every device's director keyring). */
const director = generateKeyPair();

interface Fleet {
  server: FleetServer;
  url: string;
  admin: AdminClient;
  token: string;
  close(): Promise<void>;
}

/** A fleet server on a fresh SQLite file, serving the repository at /repo/, releases imported. */
async function startFleet(
  signer = new Director(parsePrivateKey(director.privateKeyPem)),
): Promise<Fleet> {
  const dir = join(work.root, 'fleet-' + Math.random().toString(36).slice(2));
  await mkdir(dir);
  const database = await openDatabase(join(dir, 'fleet.db'));
  const server = await createServer({
    database,
    director: signer,
    repository: { source: repo },
    secureCookies: false,
    evaluateIntervalMs: 0,
    bootstrapAdmin: { username: 'admin', password: 'fleet test password' },
  });
  const url = await server.listen(0, '127.0.0.1');
  const admin = new AdminClient(url);
  await admin.login('admin', 'fleet test password');
  const { token } = await admin.post<{ token: string }>('/api/v1/enrolment-tokens', { uses: 10 });
  await admin.post('/api/v1/releases/import', {});
  return {
    server,
    url,
    admin,
    token,
    close: async () => {
      await server.close();
      await database.close();
    },
  };
}

/** A device of the fleet, booted from B holding 1.0.0 (committed), with no repository URL of its own. */
async function device(
  fleet: Fleet,
  opts: { token?: boolean; extraToml?: string } = {},
): Promise<DeviceFixture> {
  const token = opts.token === false ? '' : `token = "${fleet.token}"\n`;
  const d = await makeDevice({
    slotMiB: 8,
    extraToml: `[server]\nurl = "${fleet.url}"\n${token}${opts.extraToml ?? ''}`,
  });
  await d.trust(work, repo);
  await writeFile(join(d.root, 'etc/ferry/director-keyring'), director.publicKeyPem);
  await (await Agent.open({ root: d.root })).install(bundles['1.0.0']!);
  await bootNext(d);
  await (await Agent.open({ root: d.root })).mark('booted', 'good');
  return d;
}

/** The result of a `--json` command: events come first, one line each, then the result. */
function lastDocument(stdout: string): unknown {
  const at = stdout.startsWith('{\n') ? 0 : stdout.lastIndexOf('\n{\n') + 1;
  return JSON.parse(stdout.slice(at));
}

/** Runs `fn` with a fresh fleet and one of its devices, and removes both afterwards. */
async function withFleetDevice(
  fn: (fleet: Fleet, d: DeviceFixture) => Promise<void>,
  o: { signer?: Director; token?: boolean; extraToml?: string } = {},
): Promise<void> {
  const fleet = await startFleet(o.signer);
  try {
    const d = await device(fleet, o);
    try {
      await fn(fleet, d);
    } finally {
      await d.cleanup();
    }
  } finally {
    await fleet.close();
  }
}

/** Plays the bootloader's side of one boot and sets the kernel command line it chose. */
async function bootNext(d: DeviceFixture): Promise<string> {
  const agent = await Agent.open({ root: d.root });
  const booted = await (agent.bootloader as FileBootloader).boot();
  assert.ok(booted, 'the bootloader found a slot to boot');
  await d.boot(booted);
  return booted;
}

const cycle = async (d: DeviceFixture) => (await Agent.open({ root: d.root })).fleetCycle();

async function rollout(fleet: Fleet, version: string, extra: object = {}): Promise<string> {
  const r = await fleet.admin.post<{ id: string }>('/api/v1/rollouts', {
    name: `to ${version}`,
    release: { compatible: 'test-board', version },
    channel: 'stable',
    phases: [100],
    minReports: 1,
    ...extra,
  });
  return r.id;
}

type Counts = Record<string, number>;
const rolloutOf = (fleet: Fleet, id: string) =>
  fleet.admin.get<{ state: string; counts: Counts; pauseReason: string | null }>(
    `/api/v1/rollouts/${id}`,
  );
const eventsOf = async (fleet: Fleet, deviceId: string) =>
  (
    await fleet.admin.get<{ events: Array<{ state: string; detail: string | null }> }>(
      `/api/v1/devices/${deviceId}`,
    )
  ).events
    .map((e) => e.state)
    .reverse();

before(async () => {
  if (caps.skip) return;
  work = await makeDevice({ slotMiB: 8 });
  repo = join(work.root, 'srv', 'repo');
  await mkdir(repo, { recursive: true });
  const keys = { root: [newKey()], targets: [newKey()], snapshot: newKey(), timestamp: newKey() };
  await initRepo(repo, { keys });
  const v1 = imageLikeBytes(6 * MiB, 81);
  const v2 = Buffer.from(v1);
  imageLikeBytes(2 * MiB, 82).copy(v2, 2 * MiB);
  const images = { '1.0.0': v1, '1.1.0': v2 };
  let counter = 0;
  for (const [version, img] of Object.entries(images)) {
    const path = join(work.root, `${version}.img`);
    await writeFile(path, img);
    bundles[version] = await work.bundle(path, { version, counter: ++counter });
  }
  const keyring = await loadKeyring(join(work.root, 'etc/ferry/keyring'));
  const signing = { targets: keys.targets, snapshot: keys.snapshot, timestamp: keys.timestamp };
  for (const v of ['1.0.0', '1.1.0'])
    await publishBundle(repo, bundles[v]!, { channel: 'stable', keyring, keys: signing });
});
after(async () => {
  await work?.cleanup();
});

describe('the agent with a fleet server', () => {
  describe('when a rollout assigns a newer release', () => {
    it(
      'enrols, installs the verified assignment, and reports committed after the good boot',
      caps,
      async () => {
        await withFleetDevice(async (fleet, d) => {
          const first = await cycle(d);
          assert.equal(first.enrolment, 'accepted');
          assert.equal(first.assignment, undefined);
          assert.equal(first.action, 'none');
          const id = await rollout(fleet, '1.1.0');
          // Through the CLI, as an operator or the daemon's timer would.
          const { stdout } = await run(FERRY, ['fleet', 'checkin', '--root', d.root, '--json']);
          // Events come first, one compact JSON line each; the result is the final document.
          const r = lastDocument(stdout) as {
            action: string;
            installed: { version: string; target: string; fetchedBytes: number };
          };
          assert.equal(r.action, 'installed');
          assert.equal(r.installed.version, '1.1.0');
          assert.equal(r.installed.target, 'rootfs.0');
          // Seeded from 1.0.0 in the other slot: far less than the 6 MiB image was fetched.
          assert.ok(r.installed.fetchedBytes <= 3 * MiB, `fetched ${r.installed.fetchedBytes}`);
          assert.equal((await rolloutOf(fleet, id)).counts.rebooting, 1);
          // The same assignment again while the reboot is pending: nothing is written twice.
          assert.equal((await cycle(d)).action, 'waiting');

          assert.equal(await bootNext(d), 'A');
          const { stdout: bc } = await run(FERRY, ['boot-check', '--root', d.root, '--json']);
          assert.match(bc, /"result": "good"/);
          assert.match(bc, /"id":"fleet.reported","rolloutId":"[^"]+","state":"committed"/);
          const view = await rolloutOf(fleet, id);
          assert.equal(view.counts.committed, 1);
          await fleet.server.evaluate();
          assert.equal((await rolloutOf(fleet, id)).state, 'completed');
          const st = await loadFleetState((await Agent.open({ root: d.root })).config);
          assert.equal(st.assignment, undefined);
          assert.equal(st.lastOutcome?.state, 'committed');
          const events = await eventsOf(fleet, first.deviceId);
          for (const s of ['assigned', 'downloading', 'rebooting', 'committed'])
            assert.ok(events.includes(s), `${s} in ${events.join(',')}`);
          const again = await cycle(d);
          assert.equal(again.assignment, undefined);
        });
      },
    );
  });

  describe('when the new release fails its health check', () => {
    it('reports rolled-back and the rollout pauses itself', caps, async () => {
      await withFleetDevice(async (fleet, d) => {
        await cycle(d);
        const id = await rollout(fleet, '1.1.0');
        assert.equal((await cycle(d)).action, 'installed');
        assert.equal(await bootNext(d), 'A');
        await d.healthCheck('10-app', '#!/bin/sh\necho app did not start\nexit 1\n');
        // boot-check marks the slot bad, tells the server, then reboots (a no-op command here).
        await assert.rejects(
          run(FERRY, ['boot-check', '--root', d.root], {
            env: { ...process.env, FERRY_REBOOT_COMMAND: 'true' },
          }),
        );
        const view = await rolloutOf(fleet, id);
        assert.equal(view.counts['rolled-back'], 1);
        await fleet.server.evaluate();
        const after = await rolloutOf(fleet, id);
        assert.equal(after.state, 'paused');
        const st = await loadFleetState((await Agent.open({ root: d.root })).config);
        assert.equal(st.lastOutcome?.state, 'rolled-back');
      });
    });
  });

  describe('when the new release never comes up and the bootloader falls back', () => {
    it('the boot check on the old slot reports rolled-back with the reason', caps, async () => {
      await withFleetDevice(async (fleet, d) => {
        await cycle(d);
        const id = await rollout(fleet, '1.1.0');
        assert.equal((await cycle(d)).action, 'installed');
        // Every try of A dies before its boot check; the attempts run out and B boots again.
        const tries: string[] = [];
        for (let i = 0; i < 4; i++) tries.push(await bootNext(d));
        assert.deepEqual(tries, ['A', 'A', 'A', 'B']);
        const { stdout } = await run(FERRY, ['boot-check', '--root', d.root, '--json']);
        assert.match(stdout, /"id":"fleet.reported","rolloutId":"[^"]+","state":"rolled-back"/);
        assert.equal((await rolloutOf(fleet, id)).counts['rolled-back'], 1);
        const detail = (
          await fleet.admin.get<{ events: Array<{ state: string; detail: string | null }> }>(
            `/api/v1/devices/${(await loadFleetState((await Agent.open({ root: d.root })).config)).deviceId}`,
          )
        ).events.find((e) => e.state === 'rolled-back')?.detail;
        assert.match(detail ?? '', /did not boot to a good state/);
      });
    });
  });

  describe('when the server is not trustworthy', () => {
    it(
      'refuses an assignment signed by a key the device does not trust, writes nothing, reports failed',
      caps,
      async () => {
        await withFleetDevice(
          async (fleet, d) => {
            await cycle(d);
            const id = await rollout(fleet, '1.1.0');
            const before = await d.digest();
            await assert.rejects(cycle(d), (e: unknown) =>
              isFerryError(e, 'DEVICE_ASSIGNMENT_INVALID'),
            );
            assert.equal(await d.digest(), before);
            assert.equal((await rolloutOf(fleet, id)).counts.failed, 1);
          },
          { signer: new Director(newKey()) },
        );
      },
    );

    it(
      'accepts the assignments of a server rotating its key, signed with the new and the old key',
      caps,
      async () => {
        await withFleetDevice(
          async (fleet, d) => {
            await cycle(d);
            await rollout(fleet, '1.1.0');
            const r = await cycle(d);
            assert.equal(r.action, 'installed');
            assert.equal(r.installed?.version, '1.1.0');
          },
          { signer: new Director(newKey(), [parsePrivateKey(director.privateKeyPem)]) },
        );
      },
    );

    it(
      'refuses a release the signed repository does not list (arbitrary software)',
      caps,
      async () => {
        await withFleetDevice(async (fleet, d) => {
          await cycle(d);
          // The fleet database gains a release no TUF targets role signs (a compromised server).
          const path = 'channels/stable/test-board/9.9.9/manifest.json';
          await importReleases(
            fleet.server.context.db,
            [
              {
                channel: 'stable',
                compatible: 'test-board',
                version: '9.9.9',
                releaseCounter: 99,
                manifestPath: path,
                manifestSha256: 'ab'.repeat(32),
                manifestLength: 999,
              },
            ],
            Date.now(),
          );
          const id = await rollout(fleet, '9.9.9');
          const before = await d.digest();
          await assert.rejects(cycle(d), (e: unknown) =>
            isFerryError(e, 'DEVICE_ASSIGNMENT_MISMATCH'),
          );
          assert.equal(await d.digest(), before);
          assert.equal((await rolloutOf(fleet, id)).counts.failed, 1);
        });
      },
    );
  });

  describe('when the device has no director keyring', () => {
    it('is refused with the keyring error before anything is written', caps, async () => {
      await withFleetDevice(async (fleet, d) => {
        await cycle(d);
        await rollout(fleet, '1.1.0');
        await writeFile(join(d.root, 'etc/ferry/director-keyring'), 'not a key\n');
        const before = await d.digest();
        await assert.rejects(
          cycle(d),
          (e: unknown) => e instanceof FerryError && e.code === 'KEYRING_INVALID',
        );
        assert.equal(await d.digest(), before);
        assert.ok(
          (await readFile(join(d.root, 'var/lib/ferry/device.key'), 'utf8')).includes(
            'PRIVATE KEY',
          ),
        );
      });
    });
  });
});

describe('the agent with a fleet server, further', () => {
  describe('when the device enrols without a token', () => {
    it('waits for approval, then checks in once an admin approves it', caps, async () => {
      await withFleetDevice(
        async (fleet, d) => {
          const first = await cycle(d);
          assert.equal(first.enrolment, 'pending');
          assert.equal(first.action, 'pending-approval');
          const { stdout } = await run(FERRY, ['fleet', 'status', '--root', d.root, '--json']);
          const st = JSON.parse(stdout) as { deviceId: string; enrolment: string };
          assert.equal(st.deviceId, first.deviceId);
          assert.equal(st.enrolment, 'pending');
          await fleet.admin.post(`/api/v1/devices/${first.deviceId}/approve`, {});
          const next = await cycle(d);
          assert.equal(next.enrolment, 'accepted');
          assert.equal(next.action, 'none');
          // Accepted, the device works under a session kept beside its key (0600), and the
          // next cycle reuses it instead of signing again.
          const file = join(d.root, 'var/lib/ferry/device.key.session');
          const kept = JSON.parse(await readFile(file, 'utf8')) as { sessionId: string };
          assert.match(kept.sessionId, /^s1\.\d{13}\./);
          assert.equal((await stat(file)).mode & 0o777, 0o600);
          assert.equal((await cycle(d)).action, 'none');
          assert.equal(
            (JSON.parse(await readFile(file, 'utf8')) as { sessionId: string }).sessionId,
            kept.sessionId,
          );
          const opened = fleet.server.context.metrics.render({});
          assert.match(opened, /route="\/api\/v1\/device\/session",status="200"} 1\n/);
          // A session the server does not know (here: a wrong key) is refused once; the device
          // opens a new session and the cycle goes on.
          const stored = JSON.parse(await readFile(file, 'utf8')) as Record<string, string>;
          await writeFile(file, JSON.stringify({ ...stored, key: '0'.repeat(64) }));
          assert.equal((await cycle(d)).action, 'none');
          const renewed = JSON.parse(await readFile(file, 'utf8')) as { sessionId: string };
          assert.notEqual(renewed.sessionId, kept.sessionId);
        },
        { token: false },
      );
    });
  });

  describe('when the rollout asks each device to confirm', () => {
    it('stages the release until the user activates it, then reports rebooting', caps, async () => {
      await withFleetDevice(async (fleet, d) => {
        await cycle(d);
        const id = await rollout(fleet, '1.1.0', { confirm: true });
        const r = await cycle(d);
        assert.equal(r.action, 'staged');
        assert.equal(r.confirm, true);
        const agent = await Agent.open({ root: d.root });
        assert.equal(await agent.bootloader.getPrimary(), 'B', 'the running slot stays primary');
        assert.equal((await rolloutOf(fleet, id)).counts.installing, 1);
        assert.equal((await cycle(d)).action, 'waiting');
        // The user presses Install on the device.
        await run(FERRY, ['activate', '--root', d.root]);
        const next = await cycle(d);
        assert.equal(next.action, 'waiting');
        assert.equal((await rolloutOf(fleet, id)).counts.rebooting, 1);
        assert.equal(await bootNext(d), 'A');
        await run(FERRY, ['boot-check', '--root', d.root]);
        assert.equal((await rolloutOf(fleet, id)).counts.committed, 1);
      });
    });
  });

  describe('when the daemon runs', () => {
    it(
      'its cycle follows the director, and ferry fleet checkin goes through it',
      caps,
      async () => {
        const fleet = await startFleet();
        const d = await device(fleet, {
          extraToml: '[daemon]\nsocket = "/run/ferry/ferry.sock"\nreboot = "never"\n',
        });
        const agent = await Agent.open({ root: d.root });
        const daemon = new Daemon(agent);
        const api = await listenDaemonApi(daemon, agent.config.daemon.socket);
        try {
          assert.equal((await daemon.runCycle()).action, 'up-to-date');
          await rollout(fleet, '1.1.0');
          const { stdout } = await run(FERRY, ['fleet', 'checkin', '--root', d.root, '--json']);
          const o = lastDocument(stdout) as {
            action: string;
            reboot?: string;
            installed?: { version: string };
          };
          assert.equal(o.action, 'committed');
          assert.equal(o.installed?.version, '1.1.0');
          assert.equal(o.reboot, 'required');
          assert.equal(daemon.daemonStatus().state, 'reboot-required');
        } finally {
          await daemon.stop();
          await api.close();
          await d.cleanup();
          await fleet.close();
        }
      },
    );
  });
});

describe('FleetSession', () => {
  describe('when system.toml has no [server]', () => {
    it('is FLEET_NOT_CONFIGURED', caps, async () => {
      const d = await makeDevice({ slotMiB: 8 });
      try {
        const agent = await Agent.open({ root: d.root });
        assert.throws(
          () => new FleetSession(agent),
          (e: unknown) => isFerryError(e, 'FLEET_NOT_CONFIGURED'),
        );
      } finally {
        await d.cleanup();
      }
    });
  });
});
