/**
 * The fleet side of a VM scenario, on the host: a TUF repository holding the scenario's
 * releases, and the real fleet server (SQLite) serving it at /repo/, with a director key and
 * an enrolment token. The guest reaches it at 10.0.2.2 (QEMU user networking); the files a
 * device image would ship for it (system.toml with [server], the repository's root, the
 * director's public key) are served to the guest by a file server for the test to fetch.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKeyPair, loadKeyring, parsePrivateKey } from '@ferry/core';
import { initRepo, publishBundle } from '@ferry/repo';
import {
  AdminClient,
  Director,
  createServer,
  openDatabase,
  type Database,
  type FleetServer,
} from '@ferry/server';
import assert from 'node:assert/strict';
import type { Vm } from './qemu.ts';
import type { Run } from './scenario.ts';
import { startFileServer, type FileServer } from './file-server.ts';

/** Where the guest keeps the fleet files (the persistent data partition). */
export const GUEST_FLEET_DIR = '/data/fleet';
/** The guest command line option that selects the fleet configuration. */
export const GUEST_FLEET_CONFIG = `--config ${GUEST_FLEET_DIR}/system.toml`;

/** A running fleet for one scenario. */
export interface VmFleet {
  server: FleetServer;
  admin: AdminClient;
  /** The guest's shell command that fetches the fleet files into GUEST_FLEET_DIR. */
  provisionCommand: string;
  /** Starts a rollout of `version` to every device (one phase); returns its id. */
  rollout(version: string): Promise<string>;
  /** A rollout's state and counts by device state. */
  view(id: string): Promise<{ state: string; counts: Record<string, number> }>;
  close(): Promise<void>;
}

const ADMIN_PASSWORD = 'vm fleet password';
const newKey = () => parsePrivateKey(generateKeyPair().privateKeyPem);

/** The guest's system.toml (as built by build-rootfs.sh) plus [update] trust and [server]. */
function guestConfig(url: string, token: string): string {
  return `[system]
compatible = "ferry-vm-x86_64"
bootloader = "grub"
boot-attempts = 3
data-directory = "/data/ferry"

[keyring]
path = "/etc/ferry/keyring"

[health]
directory = "/etc/ferry/health.d"
timeout = 60

[update]
trusted-root = "${GUEST_FLEET_DIR}/repository-root.json"

[server]
url = "${url}"
token = "${token}"
director-keyring = "${GUEST_FLEET_DIR}/director.pub"

[bootloader.grub]
env = "/boot/grub/grubenv"

[slot.rootfs.0]
device = "/dev/vda3"
bootname = "A"

[slot.rootfs.1]
device = "/dev/vda4"
bootname = "B"
`;
}

async function repository(run: Run, releases: string[]): Promise<string> {
  const dir = join(run.dir, 'repo');
  const keys = { root: [newKey()], targets: [newKey()], snapshot: newKey(), timestamp: newKey() };
  await initRepo(dir, { keys });
  const keyring = await loadKeyring(join(run.artefacts.cache, 'key', 'release.pub'));
  const signing = { targets: keys.targets, snapshot: keys.snapshot, timestamp: keys.timestamp };
  for (const name of releases) {
    const bundle = run.artefacts.bundles[name];
    if (!bundle) throw new Error(`no bundle ${name} in the artefacts`);
    await publishBundle(dir, bundle, { channel: 'stable', keyring, keys: signing });
  }
  return dir;
}

async function startServer(run: Run, repo: string, director: Director) {
  const database: Database = await openDatabase(join(run.dir, 'fleet.db'));
  const server = await createServer({
    database,
    director,
    repository: { source: repo },
    secureCookies: false,
    evaluateIntervalMs: 0,
    bootstrapAdmin: { username: 'admin', password: ADMIN_PASSWORD },
  });
  // QEMU's user network sends the guest's 10.0.2.2 to the host's loopback.
  const url = await server.listen(0, '127.0.0.1');
  return { database, server, url };
}

/**
 * Publishes `releases` (artefact names, e.g. ['v1', 'v2']) and starts the server.
 * @example
 * const fleet = await startVmFleet(run, ['v1', 'v2']);
 * await vm.run(fleet.provisionCommand, 60_000);
 */
export async function startVmFleet(run: Run, releases: string[]): Promise<VmFleet> {
  const repo = await repository(run, releases);
  const director = generateKeyPair();
  const { database, server, url } = await startServer(
    run,
    repo,
    new Director(parsePrivateKey(director.privateKeyPem)),
  );
  const admin = new AdminClient(url);
  await admin.login('admin', ADMIN_PASSWORD);
  const { token } = await admin.post<{ token: string }>('/api/v1/enrolment-tokens', { uses: 5 });
  await admin.post('/api/v1/releases/import', {});
  const port = new URL(url).port;
  const files: FileServer = await startFileServer({
    '/system.toml': { body: guestConfig(`http://10.0.2.2:${port}`, token) },
    '/repository-root.json': {
      body: await readFile(join(repo, 'metadata', '1.root.json'), 'utf8'),
    },
    '/director.pub': { body: director.publicKeyPem },
  });
  const provisionCommand = [
    `mkdir -p ${GUEST_FLEET_DIR}`,
    ...['system.toml', 'repository-root.json', 'director.pub'].map(
      (f) => `wget -qO ${GUEST_FLEET_DIR}/${f} ${files.guestUrl(`/${f}`)}`,
    ),
  ].join(' && ');
  return {
    server,
    admin,
    provisionCommand,
    rollout: async (version) =>
      (
        await admin.post<{ id: string }>('/api/v1/rollouts', {
          name: `vm to ${version}`,
          release: { compatible: 'ferry-vm-x86_64', version },
          channel: 'stable',
          phases: [100],
          minReports: 1,
        })
      ).id,
    view: (id) => admin.get(`/api/v1/rollouts/${id}`),
    close: async () => {
      await files.close();
      await server.close();
      await database.close();
    },
  };
}

/** Runs `ferry fleet checkin --json` in the guest; returns its final JSON document. */
export async function guestCheckin(vm: Vm): Promise<Record<string, unknown>> {
  const { rc, output } = await vm.run(`ferry fleet checkin ${GUEST_FLEET_CONFIG} --json`, 600_000);
  assert.equal(rc, 0, vm.tail());
  const start = output.lastIndexOf('{');
  assert.ok(start >= 0, vm.tail());
  return JSON.parse(output.slice(start).join('\n')) as Record<string, unknown>;
}
