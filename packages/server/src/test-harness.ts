/**
 * Test support (no test-framework imports, so it is an ordinary module): a fleet server on a
 * real database listening on a free port, with an admin, an enrolment token and a release.
 */
import type { Inventory } from '@ferry/protocol';
import { AdminClient } from './admin-client.ts';
import { openDatabase, type Database } from './database.ts';
import { DeviceClient } from './device-client.ts';
import { importReleases } from './releases.ts';
import { createServer, type FleetServer, type ServerOptions } from './server.ts';

/** A running server for one test. */
export interface Harness {
  server: FleetServer;
  database: Database;
  url: string;
  admin: AdminClient;
  token: string;
  device(): DeviceClient;
  close(): Promise<void>;
}

export const ADMIN_PASSWORD = 'correct horse battery';

/** Inventory of a test device. */
export function inventory(compatible = 'acme-widget', releaseCounter = 1): Inventory {
  return {
    compatible,
    hardwareId: 'hw-1',
    agentVersion: '0.1.0',
    bootedSlot: 'a',
    releaseCounter,
    slots: [
      { name: 'a', version: '1.0.0', releaseCounter, health: 'good' },
      { name: 'b', health: 'unknown' },
    ],
    attributes: { site: 'lab' },
  };
}

/** Release rows as the repository import would give them. */
export function testReleases(channel = 'stable') {
  return [2, 3].map((n) => ({
    channel,
    compatible: 'acme-widget',
    version: `1.${n}.0`,
    releaseCounter: n,
    manifestPath: `channels/${channel}/acme-widget/1.${n}.0/manifest.json`,
    manifestSha256: String(n).repeat(64),
    manifestLength: 1000 + n,
  }));
}

/** Starts a server on `dbUrl` (a fresh database) with admin, token and releases 1.2.0, 1.3.0. */
export async function startHarness(
  dbUrl: string,
  opts: Partial<ServerOptions> = {},
): Promise<Harness> {
  const database = await openDatabase(dbUrl);
  const server = await createServer({
    database,
    secureCookies: false,
    evaluateIntervalMs: 0,
    bootstrapAdmin: { username: 'admin', password: ADMIN_PASSWORD },
    ...opts,
  });
  await importReleases(database.db, testReleases(), Date.now());
  const url = await server.listen(0);
  const admin = new AdminClient(url);
  await admin.login('admin', ADMIN_PASSWORD);
  const { token } = await admin.post<{ token: string }>('/api/v1/enrolment-tokens', {
    uses: 100000,
  });
  return {
    server,
    database,
    url,
    admin,
    token,
    device: () => new DeviceClient(url),
    async close() {
      await server.close();
      await database.close();
    },
  };
}
