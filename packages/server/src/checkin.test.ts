/**
 * The check-in hot path's security properties, run against every backend (backends.test.ts):
 * the key cache and the prepared statements change nothing about who may act or replay.
 */
import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import type { DeviceDetail } from '@ferry/protocol';
import { createServer } from './server.ts';
import { inventory, startHarness, type Harness } from './test-harness.ts';
import type { DeviceClient } from './device-client.ts';

const PATH = '/api/v1/device/checkin';

async function send(url: string, headers: Record<string, string>, body: Buffer<ArrayBuffer>) {
  const r = await fetch(url + PATH, { method: 'POST', headers, body });
  return { status: r.status, code: ((await r.json()) as { code?: string }).code };
}

function signed(d: DeviceClient, inv = inventory()) {
  const body = Buffer.from(JSON.stringify({ inventory: inv }));
  return { body, headers: d.signedHeaders('POST', PATH, body) };
}

/** Registers the suite; `newDb` gives a fresh database URL per test. */
export function checkinConformance(newDb: () => Promise<string>): void {
  let h: Harness;
  let d: DeviceClient;
  beforeEach(async () => {
    h = await startHarness(await newDb());
    d = h.device();
    await d.enrol(inventory(), h.token);
    // The first check-in puts the device's key in the cache.
    await d.checkin(inventory());
  });
  afterEach(async () => {
    await h.close();
  });

  describe('when a request is replayed with the key cached', () => {
    it('refuses it, also on a second server instance over the same database', async () => {
      const r = signed(d);
      assert.equal((await send(h.url, r.headers, r.body)).status, 200);
      assert.equal((await send(h.url, r.headers, r.body)).code, 'DEVICE_REPLAY');
      const other = await createServer({ database: h.database, evaluateIntervalMs: 0 });
      const url = await other.listen(0);
      try {
        assert.equal((await send(url, r.headers, r.body)).code, 'DEVICE_REPLAY');
      } finally {
        await other.close();
      }
    });

    it('accepts exactly one of two copies sent at once, and records nothing for the other', async () => {
      const r = signed(d, { ...inventory(), hardwareId: 'hw-once' });
      const both = await Promise.all([
        send(h.url, r.headers, r.body),
        send(h.url, r.headers, r.body),
      ]);
      assert.deepEqual(both.map((x) => x.status).sort(), [200, 401]);
      assert.ok(both.some((x) => x.code === 'DEVICE_REPLAY'));
    });
  });

  describe('when the device is rejected behind the cache', () => {
    it('refuses its very next check-in, report and self read is still its own', async () => {
      // Another server instance (or a worker) rejects it: this one's cache is not told.
      await h.database.db
        .updateTable('devices')
        .set({ status: 'rejected' })
        .where('id', '=', d.id)
        .execute();
      const r = signed(d);
      assert.deepEqual(await send(h.url, r.headers, r.body), {
        status: 403,
        code: 'DEVICE_NOT_APPROVED',
      });
      const rep = await d.post<{ code: string }>('/api/v1/device/report', {
        rolloutId: 'r-1',
        state: 'downloading',
      });
      assert.equal(rep.body.code, 'DEVICE_NOT_APPROVED');
      const self = await d.call<DeviceDetail>('/api/v1/device/self', {});
      assert.equal(self.body.id, d.id);
    });
  });

  describe('when the device is deleted behind the cache', () => {
    it('refuses its next request as an unknown device', async () => {
      await h.database.db.deleteFrom('device_events').where('device_id', '=', d.id).execute();
      await h.database.db.deleteFrom('devices').where('id', '=', d.id).execute();
      const r = signed(d);
      assert.equal((await send(h.url, r.headers, r.body)).code, 'DEVICE_AUTH_FAILED');
      const self = await d.post<{ code: string }>('/api/v1/device/self', {});
      assert.equal(self.body.code, 'DEVICE_AUTH_FAILED');
    });
  });

  describe('when a check-in is refused', () => {
    it('writes nothing: a replay does not move last seen', async () => {
      const r = signed(d);
      assert.equal((await send(h.url, r.headers, r.body)).status, 200);
      const seen = async () =>
        (await h.admin.get<DeviceDetail>(`/api/v1/devices/${d.id}`)).lastSeen;
      const before = await seen();
      await new Promise((res) => setTimeout(res, 5));
      assert.equal((await send(h.url, r.headers, r.body)).code, 'DEVICE_REPLAY');
      assert.equal(await seen(), before);
    });
  });
}
