import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { DEVICE_HEADERS } from '@ferry/protocol';
import { FleetClient } from './fleet-client.ts';

const INVENTORY = { compatible: 'acme', slots: [], attributes: {} };
const ANSWER = { pollSeconds: 60, assignment: null, repositoryUrl: null };

/** A server without device sessions (an older version): 404 on /session, signed check-ins. */
function oldServer(seen: IncomingMessage[]): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    seen.push(req);
    req.resume();
    req.on('end', () => {
      const json = (status: number, v: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(v));
      };
      if (req.url === '/api/v1/device/checkin') return json(200, ANSWER);
      json(404, { code: 'SERVER_NOT_FOUND', message: `no route POST ${req.url}` });
    });
  });
  return new Promise((res) =>
    server.listen(0, '127.0.0.1', () =>
      res({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }),
    ),
  );
}

describe('FleetClient', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-fleet-client-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  describe('when the server has no device sessions', () => {
    it('checks in with a signed request and keeps no session', async () => {
      const seen: IncomingMessage[] = [];
      const { server, url } = await oldServer(seen);
      try {
        const key = join(dir, 'old.key');
        const c = await FleetClient.open({ url, key, directorKeyring: '/none' });
        const r = await c.checkin(INVENTORY);
        assert.equal(r.pollSeconds, 60);
        assert.deepEqual(
          seen.map((q) => q.url),
          ['/api/v1/device/session', '/api/v1/device/checkin'],
        );
        const checkin = seen[1]!;
        assert.equal(checkin.headers[DEVICE_HEADERS.session], undefined);
        assert.equal(String(checkin.headers[DEVICE_HEADERS.signature]).length, 88);
        assert.equal(c.session, undefined);
        assert.ok(!existsSync(`${key}.session`));
      } finally {
        server.close();
      }
    });
  });

  describe('when sessions are turned off', () => {
    it('signs every request and never asks for a session', async () => {
      const seen: IncomingMessage[] = [];
      const { server, url } = await oldServer(seen);
      try {
        const c = await FleetClient.open(
          { url, key: join(dir, 'off.key'), directorKeyring: '/none' },
          5000,
          { sessions: false },
        );
        await c.checkin(INVENTORY);
        assert.deepEqual(
          seen.map((q) => q.url),
          ['/api/v1/device/checkin'],
        );
      } finally {
        server.close();
      }
    });
  });

  describe('when the stored session is damaged or for another server', () => {
    it('ignores it', async () => {
      const key = join(dir, 'damaged.key');
      await FleetClient.open({ url: 'http://127.0.0.1:1', key, directorKeyring: '/none' });
      await writeFile(`${key}.session`, '{not json');
      const a = await FleetClient.open({
        url: 'http://127.0.0.1:1',
        key,
        directorKeyring: '/none',
      });
      assert.equal(a.session, undefined);
      const good = {
        url: 'http://other.example',
        sessionId: `s1.${Date.now() + 3600_000}.${'a'.repeat(22)}`,
        deviceId: a.deviceId,
        key: 'b'.repeat(64),
      };
      await writeFile(`${key}.session`, JSON.stringify(good));
      const b = await FleetClient.open({
        url: 'http://127.0.0.1:1',
        key,
        directorKeyring: '/none',
      });
      assert.equal(b.session, undefined, 'a session of another server is not used');
      await writeFile(`${key}.session`, JSON.stringify({ ...good, url: 'http://127.0.0.1:1' }));
      const c = await FleetClient.open({
        url: 'http://127.0.0.1:1',
        key,
        directorKeyring: '/none',
      });
      assert.equal(c.session?.id, good.sessionId);
      assert.match(await readFile(`${key}.session`, 'utf8'), /sessionId/);
    });
  });
});
