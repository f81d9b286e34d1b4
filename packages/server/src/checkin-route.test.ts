import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inventory, startHarness, type Harness } from './test-harness.ts';
import type { DeviceClient } from './device-client.ts';

/** A POST with a chunked body (no content-length), so the cap must count the bytes. */
function chunked(url: string, path: string, headers: Record<string, string>, parts: Buffer[]) {
  return new Promise<{ status: number; body: { code?: string } }>((res, rej) => {
    const u = new URL(url);
    const r = request({ host: u.hostname, port: u.port, path, method: 'POST', headers }, (resp) => {
      const got: Buffer[] = [];
      resp.on('data', (c: Buffer) => got.push(c));
      resp.on('end', () =>
        res({
          status: resp.statusCode ?? 0,
          body: JSON.parse(Buffer.concat(got).toString()) as { code?: string },
        }),
      );
    });
    r.on('error', rej);
    for (const p of parts) r.write(p);
    r.end();
  });
}

describe('the check-in route on node:http', () => {
  let h: Harness;
  let d: DeviceClient;
  before(async () => {
    h = await startHarness(join(mkdtempSync(join(tmpdir(), 'ferry-route-')), 'fleet.db'));
    d = h.device();
    await d.enrol(inventory(), h.token);
  });
  after(() => h.close());

  describe('when a chunked body passes 64 KiB', () => {
    it('refuses it with SERVER_BODY_TOO_LARGE and records nothing', async () => {
      const body = Buffer.from(JSON.stringify({ inventory: inventory(), pad: 'x'.repeat(70_000) }));
      const headers = d.signedHeaders('POST', '/api/v1/device/checkin', body);
      const r = await chunked(h.url, '/api/v1/device/checkin', headers, [
        body.subarray(0, 30_000),
        body.subarray(30_000),
      ]);
      assert.equal(r.status, 413);
      assert.equal(r.body.code, 'SERVER_BODY_TOO_LARGE');
    });
  });

  describe('when a check-in is answered', () => {
    it('counts it in /metrics under the route, like every Hono route', async () => {
      await d.checkin(inventory());
      // Two timed: this one and the refused oversized one before it.
      const text = await (await fetch(h.url + '/metrics')).text();
      assert.match(
        text,
        /ferry_http_requests_total\{route="\/api\/v1\/device\/checkin",status="200"\} 1\n/,
      );
      assert.match(
        text,
        /ferry_http_request_duration_seconds_count\{route="\/api\/v1\/device\/checkin"\} 2\n/,
      );
    });

    it('answers a refused one with the shared error body and status', async () => {
      const body = Buffer.from(JSON.stringify({ inventory: inventory() }));
      const headers = { ...d.signedHeaders('POST', '/api/v1/device/checkin', body) };
      headers['x-ferry-signature'] = 'A'.repeat(86) + '==';
      const r = await chunked(h.url, '/api/v1/device/checkin', headers, [body]);
      assert.deepEqual([r.status, r.body.code], [401, 'DEVICE_AUTH_FAILED']);
    });
  });

  describe('when the check-in path carries a query', () => {
    it('goes through Hono, with the query inside the signature', async () => {
      const path = '/api/v1/device/checkin?from=test';
      const body = Buffer.from(JSON.stringify({ inventory: inventory() }));
      const r = await chunked(h.url, path, d.signedHeaders('POST', path, body), [body]);
      assert.equal(r.status, 200);
    });
  });
});
