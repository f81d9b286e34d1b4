import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEVICE_HEADERS, type SessionResponse } from '@ferry/protocol';
import { DeviceSession, ephemeralKey, sessionKey } from '@ferry/protocol/device-session';
import { Director } from './director.ts';
import { inventory, startHarness, type Harness } from './test-harness.ts';
import { DeviceClient } from './device-client.ts';

const CHECKIN = '/api/v1/device/checkin';
const dbFile = () => join(mkdtempSync(join(tmpdir(), 'ferry-session-')), 'fleet.db');

async function send(
  url: string,
  path: string,
  headers: Record<string, string>,
  body: Buffer<ArrayBuffer>,
) {
  const r = await fetch(url + path, { method: 'POST', headers, body });
  return {
    status: r.status,
    body: (await r.json()) as { code?: string } & Record<string, unknown>,
  };
}

function checkinBody() {
  return Buffer.from(JSON.stringify({ inventory: inventory() }));
}

describe('device sessions', () => {
  let h: Harness;
  let d: DeviceClient;
  let clock = Date.now();
  beforeEach(async () => {
    clock = Date.now();
    // Two minutes: less than the clock-skew window, so the server's clock can pass the expiry
    // while the client's timestamps stay acceptable.
    h = await startHarness(dbFile(), { now: () => clock, sessionTtlMs: 120_000 });
    d = h.device();
    await d.enrol(inventory(), h.token);
  });
  afterEach(async () => {
    await h.close();
  });

  describe('when an accepted device opens a session', () => {
    it('checks in under it, and the session key never crosses the wire', async () => {
      const eph = ephemeralKey();
      const body = Buffer.from(JSON.stringify({ publicKey: eph.publicKeyHex }));
      const r = await send(
        h.url,
        '/api/v1/device/session',
        d.signedHeaders('POST', '/api/v1/device/session', body),
        body,
      );
      assert.equal(r.status, 200);
      const answer = r.body as unknown as SessionResponse;
      assert.equal(answer.expiresAt, clock + 120_000);
      const key = sessionKey(h.server.context.director.sessionSecret, d.id, answer.sessionId);
      assert.notEqual(answer.wrappedKey, key.toString('hex'));
      assert.ok(!JSON.stringify(r.body).includes(key.toString('hex')));
      const s = DeviceSession.accept(answer, eph.privateKey, d.id);
      assert.equal(s.export().key, key.toString('hex'));
      // Someone who saw the answer but holds another X25519 key unmasks something else.
      const other = DeviceSession.accept(answer, ephemeralKey().privateKey, d.id);
      assert.notEqual(other.export().key, key.toString('hex'));
      const b = checkinBody();
      assert.equal((await send(h.url, CHECKIN, s.headers('POST', CHECKIN, b), b)).status, 200);
      assert.equal(
        (await send(h.url, CHECKIN, other.headers('POST', CHECKIN, b), b)).body.code,
        'DEVICE_AUTH_FAILED',
      );
    });
  });

  describe('when a session request is tampered with or replayed', () => {
    let s: DeviceSession;
    beforeEach(async () => {
      s = await d.openSession();
    });

    it('refuses a replayed request, and one of two copies sent at once', async () => {
      const b = checkinBody();
      const headers = s.headers('POST', CHECKIN, b);
      assert.equal((await send(h.url, CHECKIN, headers, b)).status, 200);
      assert.equal((await send(h.url, CHECKIN, headers, b)).body.code, 'DEVICE_REPLAY');
      const again = s.headers('POST', CHECKIN, b);
      const both = await Promise.all([
        send(h.url, CHECKIN, again, b),
        send(h.url, CHECKIN, again, b),
      ]);
      assert.deepEqual(both.map((x) => x.status).sort(), [200, 401]);
    });

    it('refuses a changed body, a changed path and a MAC moved to another device', async () => {
      const b = checkinBody();
      const headers = s.headers('POST', CHECKIN, b);
      const changed = Buffer.from(b.toString().replace('hw-1', 'hw-2'));
      assert.equal((await send(h.url, CHECKIN, headers, changed)).body.code, 'DEVICE_AUTH_FAILED');
      assert.equal(
        (await send(h.url, '/api/v1/device/self', headers, b)).body.code,
        'DEVICE_AUTH_FAILED',
      );
      const e = h.device();
      await e.enrol(inventory(), h.token);
      const moved = { ...s.headers('POST', CHECKIN, b), [DEVICE_HEADERS.device]: e.id };
      assert.equal((await send(h.url, CHECKIN, moved, b)).body.code, 'DEVICE_AUTH_FAILED');
    });

    it('refuses a session id whose expiry was pushed later', async () => {
      const b = checkinBody();
      const headers = s.headers('POST', CHECKIN, b);
      const later = s.id.replace(/^s1\.(\d{13})/, (_, t: string) => `s1.${Number(t) + 3600_000}`);
      const forged = { ...headers, [DEVICE_HEADERS.session]: later };
      assert.equal((await send(h.url, CHECKIN, forged, b)).body.code, 'DEVICE_AUTH_FAILED');
    });

    it('refuses an ed25519 signature under a session header, and a MAC without one', async () => {
      const b = checkinBody();
      const signed = d.signedHeaders('POST', CHECKIN, b);
      const mixed = { ...signed, [DEVICE_HEADERS.session]: s.id };
      assert.equal((await send(h.url, CHECKIN, mixed, b)).body.code, 'DEVICE_AUTH_FAILED');
      const bare: Record<string, string> = { ...s.headers('POST', CHECKIN, b) };
      delete bare[DEVICE_HEADERS.session];
      assert.equal((await send(h.url, CHECKIN, bare, b)).body.code, 'DEVICE_AUTH_FAILED');
    });

    it('refuses to open a session from a request made under a session', async () => {
      const body = Buffer.from(JSON.stringify({ publicKey: ephemeralKey().publicKeyHex }));
      const path = '/api/v1/device/session';
      const r = await send(h.url, path, s.headers('POST', path, body), body);
      assert.equal(r.body.code, 'DEVICE_AUTH_FAILED');
    });
  });

  describe('when the device is rejected while its session is open', () => {
    it('refuses its next request under the session, and a new session', async () => {
      await d.checkin(inventory());
      await h.database.db
        .updateTable('devices')
        .set({ status: 'rejected' })
        .where('id', '=', d.id)
        .execute();
      await assert.rejects(d.checkin(inventory()), { code: 'DEVICE_NOT_APPROVED' });
      await assert.rejects(d.openSession(), { code: 'DEVICE_NOT_APPROVED' });
    });
  });

  describe('when a device is pending approval', () => {
    it('cannot open a session', async () => {
      const p = new DeviceClient(h.url);
      await p.enrol(inventory()); // no token: pending
      await assert.rejects(p.openSession(), { code: 'DEVICE_NOT_APPROVED' });
    });
  });

  describe('when the session expires', () => {
    it('refuses it with DEVICE_SESSION_EXPIRED, and the client opens a new one', async () => {
      const s = await d.openSession();
      clock += 121_000;
      const b = checkinBody();
      const r = await send(h.url, CHECKIN, s.headers('POST', CHECKIN, b), b);
      assert.equal(r.body.code, 'DEVICE_SESSION_EXPIRED');
      assert.equal(r.status, 401);
      // The client's clock still finds the session usable: the refusal makes it reopen.
      assert.ok(s.usable(Date.now()));
      const ok = await d.post(CHECKIN, { inventory: inventory() });
      assert.equal(ok.status, 200);
      assert.notEqual(d.session?.id, s.id);
    });
  });
});

describe('device sessions across a director key rotation', () => {
  it('ends every session; the client opens a new one under the new key', async () => {
    const file = dbFile();
    const h1 = await startHarness(file, { director: Director.ephemeral() });
    const d = h1.device();
    await d.enrol(inventory(), h1.token);
    await d.checkin(inventory());
    const old = d.session!;
    await h1.server.close();
    const h2 = await startHarness(file, { director: Director.ephemeral() });
    try {
      const c = new DeviceClient(h2.url, d.privateKey);
      c.session = old;
      const b = checkinBody();
      const r = await send(h2.url, CHECKIN, old.headers('POST', CHECKIN, b), b);
      assert.equal(r.body.code, 'DEVICE_AUTH_FAILED');
      assert.equal((await c.post(CHECKIN, { inventory: inventory() })).status, 200);
      assert.notEqual(c.session?.id, old.id);
    } finally {
      await h2.close();
      await h1.database.close().catch(() => undefined);
    }
  });
});
