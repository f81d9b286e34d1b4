/**
 * The shared server suite (as hono's routers share one): every backend runs it through
 * backends.test.ts. Real HTTP on a free port, real database, real ed25519 keys.
 */
import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { verifyAssignment, type CheckinResponse, type RolloutView } from '@ferry/protocol';
import { AdminClient } from './admin-client.ts';
import { ADMIN_PASSWORD, inventory, startHarness, type Harness } from './test-harness.ts';

async function errorCode(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return (e as { code: string }).code;
  }
  return 'no error';
}

async function rollout(h: Harness, body: Record<string, unknown> = {}): Promise<RolloutView> {
  return h.admin.post<RolloutView>('/api/v1/rollouts', {
    name: 'widget 1.3',
    release: { compatible: 'acme-widget', version: '1.3.0' },
    channel: 'stable',
    phases: [100],
    ...body,
  });
}

/** Registers the suite; `newDb` gives a fresh database URL per test. */
export function serverConformance(newDb: () => Promise<string>): void {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness(await newDb());
  });
  afterEach(async () => {
    await h.close();
  });

  describe('health and metrics', () => {
    it('answers /healthz and Prometheus text on /metrics', async () => {
      assert.equal((await fetch(`${h.url}/healthz`)).status, 200);
      const m = await (await fetch(`${h.url}/metrics`)).text();
      assert.match(m, /# TYPE ferry_http_requests_total counter/);
      assert.match(m, /ferry_devices\{status="accepted"\} 0|# TYPE ferry_devices gauge/);
    });
    it('maps an unknown route to SERVER_NOT_FOUND', async () => {
      const r = await fetch(`${h.url}/nope`);
      assert.equal(r.status, 404);
      assert.equal(((await r.json()) as { code: string }).code, 'SERVER_NOT_FOUND');
    });
  });

  describe('enrolment', () => {
    it('accepts a device with a token at once', async () => {
      const d = h.device();
      const r = await d.enrol(inventory(), h.token);
      assert.deepEqual(r.body, { deviceId: d.id, status: 'accepted' });
      assert.equal(r.status, 201);
    });
    it('keeps a device without token pending until an operator approves it', async () => {
      const d = h.device();
      assert.equal((await d.enrol(inventory())).body.status, 'pending');
      assert.equal(await errorCode(d.checkin(inventory())), 'DEVICE_NOT_APPROVED');
      await h.admin.post(`/api/v1/devices/${d.id}/approve`);
      assert.equal((await d.checkin(inventory())).status, 200);
    });
    it('refuses an unknown token', async () => {
      assert.equal(
        await errorCode(h.device().enrol(inventory(), 'fet_wrong')),
        'DEVICE_ENROLMENT_REFUSED',
      );
    });
    it('refuses an enrolment signed by another key than the one offered', async () => {
      const a = h.device();
      const b = h.device();
      const body = Buffer.from(
        JSON.stringify({ publicKey: a.publicKeyHex, token: h.token, inventory: inventory() }),
      );
      const headers = {
        ...b.signedHeaders('POST', '/api/v1/device/enrol', body),
        'x-ferry-device': a.id,
      };
      const r = await fetch(`${h.url}/api/v1/device/enrol`, { method: 'POST', headers, body });
      assert.equal(((await r.json()) as { code: string }).code, 'DEVICE_AUTH_FAILED');
    });
  });

  describe('device request authentication', () => {
    it('refuses a forged signature, a replay and a stale timestamp', async () => {
      const d = h.device();
      await d.enrol(inventory(), h.token);
      const path = '/api/v1/device/checkin';
      const body = Buffer.from(JSON.stringify({ inventory: inventory() }));
      const headers = d.signedHeaders('POST', path, body);
      const send = (hd: Record<string, string>, b = body) =>
        fetch(h.url + path, { method: 'POST', headers: hd, body: b });
      const code = async (r: Response) => ((await r.json()) as { code: string }).code;
      // A body changed after signing: the signature no longer covers it.
      assert.equal(
        await code(
          await send(headers, Buffer.from(JSON.stringify({ inventory: inventory('evil') }))),
        ),
        'DEVICE_AUTH_FAILED',
      );
      assert.equal((await send(headers)).status, 200);
      assert.equal(await code(await send(headers)), 'DEVICE_REPLAY');
      const old = d.signedHeaders('POST', path, body, { timestamp: Date.now() - 10 * 60_000 });
      assert.equal(await code(await send(old)), 'DEVICE_REPLAY');
      const noSig = { ...d.signedHeaders('POST', path, body) } as Record<string, string>;
      delete noSig['x-ferry-signature'];
      assert.equal(await code(await send(noSig)), 'DEVICE_AUTH_FAILED');
    });
    it('lets device A act only as itself: its key cannot sign for device B', async () => {
      const a = h.device();
      const b = h.device();
      await a.enrol(inventory(), h.token);
      await b.enrol(inventory(), h.token);
      const body = Buffer.from(JSON.stringify({ inventory: inventory('a-writes-b') }));
      const headers = {
        ...a.signedHeaders('POST', '/api/v1/device/checkin', body),
        'x-ferry-device': b.id,
      };
      const r = await fetch(`${h.url}/api/v1/device/checkin`, { method: 'POST', headers, body });
      assert.equal(((await r.json()) as { code: string }).code, 'DEVICE_AUTH_FAILED');
      const self = await b.call<{ compatible: string }>('/api/v1/device/self', {});
      assert.equal(self.body.compatible, 'acme-widget');
    });
    it('caps device bodies at 64 KiB', async () => {
      const d = h.device();
      await d.enrol(inventory(), h.token);
      const r = await d.post<{ code: string }>('/api/v1/device/checkin', {
        inventory: inventory(),
        pad: 'x'.repeat(70_000),
      });
      assert.equal(r.status, 413);
      assert.equal(r.body.code, 'SERVER_BODY_TOO_LARGE');
    });
  });

  describe('rollouts and director', () => {
    it('assigns a signed release the device verifies, and records one final state', async () => {
      const d = h.device();
      await d.enrol(inventory(), h.token);
      const ro = await rollout(h);
      const key = (await (await fetch(`${h.url}/api/v1/director/key`)).json()) as {
        keyId: string;
        publicKey: string;
      };
      const c = await d.checkin(inventory());
      const env = c.body.assignment!;
      const a = await verifyAssignment(env, {
        directorKeys: [key],
        deviceId: d.id,
        compatible: 'acme-widget',
        nonce: c.nonce,
        installedCounter: 1,
        target: {
          path: env.signed.manifestPath,
          length: 1003,
          sha256: '3'.repeat(64),
          custom: { compatible: 'acme-widget', version: '1.3.0', releaseCounter: 3 },
        },
      });
      assert.equal(a.rolloutId, ro.id);
      await d.report({ rolloutId: ro.id, state: 'downloading', progress: 40 });
      assert.deepEqual((await d.report({ rolloutId: ro.id, state: 'committed' })).body, {
        state: 'committed',
        applied: true,
      });
      assert.deepEqual((await d.report({ rolloutId: ro.id, state: 'committed' })).body, {
        state: 'committed',
        applied: false,
      });
      assert.deepEqual((await d.report({ rolloutId: ro.id, state: 'failed' })).body, {
        state: 'committed',
        applied: false,
      });
      const after = await d.checkin(inventory('acme-widget', 3));
      assert.equal(after.body.assignment, null);
      const view = await h.admin.get<RolloutView>(`/api/v1/rollouts/${ro.id}`);
      assert.equal(view.counts.committed, 1);
      assert.equal(view.counts.failed, 0);
    });
    it('makes racing final reports end in exactly one final state', async () => {
      const d = h.device();
      await d.enrol(inventory(), h.token);
      const ro = await rollout(h);
      await d.checkin(inventory());
      const states = ['committed', 'failed', 'rolled-back', 'committed', 'failed'] as const;
      const rs = await Promise.all(states.map((state) => d.report({ rolloutId: ro.id, state })));
      assert.equal(rs.filter((r) => r.body.applied).length, 1);
      const view = await h.admin.get<RolloutView>(`/api/v1/rollouts/${ro.id}`);
      assert.equal(view.counts.committed + view.counts.failed + view.counts['rolled-back'], 1);
    });
    it('never offers an older release than the device runs', async () => {
      const d = h.device();
      await d.enrol(inventory('acme-widget', 5), h.token);
      await rollout(h);
      assert.equal((await d.checkin(inventory('acme-widget', 5))).body.assignment, null);
    });
    it('opens phases one by one as devices commit', async () => {
      const devices = Array.from({ length: 20 }, () => h.device());
      for (const d of devices) await d.enrol(inventory(), h.token);
      const ro = await rollout(h, { phases: [10, 50, 100], successThreshold: 1 });
      const assigned = async () => {
        const out: Array<{ d: (typeof devices)[number]; c: CheckinResponse }> = [];
        for (const d of devices) {
          const c = (await d.checkin(inventory())).body;
          if (c.assignment) out.push({ d, c });
        }
        return out;
      };
      const first = await assigned();
      const inPhase0 = (await h.admin.get<RolloutView>(`/api/v1/rollouts/${ro.id}`))
        .targetedInPhase;
      assert.equal(first.length, inPhase0);
      for (const { d } of first) await d.report({ rolloutId: ro.id, state: 'committed' });
      await h.server.evaluate();
      const v = await h.admin.get<RolloutView>(`/api/v1/rollouts/${ro.id}`);
      assert.equal(v.phase, 1);
      assert.ok(v.targetedInPhase >= inPhase0);
    });
    it('pauses by itself when failures pass the threshold, and resumes by hand', async () => {
      const devices = Array.from({ length: 4 }, () => h.device());
      for (const d of devices) await d.enrol(inventory(), h.token);
      const ro = await rollout(h, { failureThreshold: 0.25, minReports: 2 });
      for (const d of devices) await d.checkin(inventory());
      await devices[0]!.report({ rolloutId: ro.id, state: 'rolled-back' });
      await devices[1]!.report({ rolloutId: ro.id, state: 'failed' });
      await h.server.evaluate();
      const v = await h.admin.get<RolloutView>(`/api/v1/rollouts/${ro.id}`);
      assert.equal(v.state, 'paused');
      assert.match(v.pauseReason ?? '', /failure threshold/);
      // Paused: a device that has not started gets nothing.
      assert.equal((await devices[2]!.checkin(inventory())).body.assignment, null);
      const resumed = await h.admin.post<RolloutView>(`/api/v1/rollouts/${ro.id}/resume`);
      assert.equal(resumed.state, 'running');
      await h.server.evaluate();
      assert.equal((await h.admin.get<RolloutView>(`/api/v1/rollouts/${ro.id}`)).state, 'running');
      assert.equal(
        await errorCode(h.admin.post(`/api/v1/rollouts/${ro.id}/resume`)),
        'SERVER_CONFLICT',
      );
    });
    it('assigns nothing outside its maintenance windows', async () => {
      const d = h.device();
      await d.enrol(inventory(), h.token);
      const day = (new Date().getUTCDay() + 3) % 7;
      await rollout(h, { windows: [{ days: [day], start: '00:00', end: '23:59' }] });
      assert.equal((await d.checkin(inventory())).body.assignment, null);
    });
    it('refuses a rollout of a release the channel does not have', async () => {
      assert.equal(await errorCode(rollout(h, { channel: 'beta' })), 'REPO_RELEASE_NOT_FOUND');
    });
  });

  describe('admin authorisation', () => {
    async function userWith(role: string): Promise<AdminClient> {
      await h.admin.post('/api/v1/users', { username: role, password: ADMIN_PASSWORD, role });
      const c = new AdminClient(h.url);
      await c.login(role, ADMIN_PASSWORD);
      return c;
    }
    it('lets a viewer read but not change anything', async () => {
      const v = await userWith('viewer');
      assert.equal((await v.request('GET', '/api/v1/devices')).status, 200);
      for (const [path, body] of [
        [
          '/api/v1/rollouts',
          {
            name: 'x',
            release: { compatible: 'acme-widget', version: '1.3.0' },
            channel: 'stable',
          },
        ],
        ['/api/v1/enrolment-tokens', {}],
        ['/api/v1/users', { username: 'eve', password: 'x'.repeat(12), role: 'admin' }],
        ['/api/v1/releases/import', {}],
      ] as const) {
        const r = await v.request('POST', path, body);
        assert.equal(r.status, 403, path);
        assert.equal((r.body as { code: string }).code, 'SERVER_FORBIDDEN');
      }
    });
    it('lets an operator start rollouts but not create users', async () => {
      const o = await userWith('operator');
      assert.equal(
        (
          await o.request('POST', '/api/v1/rollouts', {
            name: 'x',
            release: { compatible: 'acme-widget', version: '1.3.0' },
            channel: 'stable',
          })
        ).status,
        201,
      );
      assert.equal(
        (
          await o.request('POST', '/api/v1/users', {
            username: 'eve',
            password: 'x'.repeat(12),
            role: 'admin',
          })
        ).status,
        403,
      );
    });
    it('refuses no session, an expired session, a missing CSRF token and a wrong password', async () => {
      const anon = new AdminClient(h.url);
      assert.equal((await anon.request('GET', '/api/v1/devices')).status, 401);
      const noCsrf = await fetch(`${h.url}/api/v1/enrolment-tokens`, {
        method: 'POST',
        headers: { cookie: h.admin.cookie, 'content-type': 'application/json' },
        body: '{}',
      });
      assert.equal(((await noCsrf.json()) as { code: string }).code, 'SERVER_CSRF');
      await h.database.db
        .updateTable('sessions')
        .set({ expires_at: Date.now() - 1 })
        .execute();
      const r = await h.admin.request('GET', '/api/v1/devices');
      assert.equal((r.body as { code: string }).code, 'SERVER_UNAUTHENTICATED');
      assert.equal(
        await errorCode(new AdminClient(h.url).login('admin', 'wrong password')),
        'SERVER_UNAUTHENTICATED',
      );
    });
    it('caps admin bodies at 256 KiB', async () => {
      const r = await h.admin.request('POST', '/api/v1/groups', {
        name: 'g',
        filter: { search: 'x' },
        pad: 'x'.repeat(300_000),
      });
      assert.equal(r.status, 413);
      assert.equal((r.body as { code: string }).code, 'SERVER_BODY_TOO_LARGE');
    });
    it('throttles password guessing', async () => {
      const c = new AdminClient(h.url);
      for (let i = 0; i < 10; i++) await errorCode(c.login('admin', 'guess' + i));
      assert.equal(await errorCode(c.login('admin', ADMIN_PASSWORD)), 'SERVER_RATE_LIMITED');
    });
    it('writes every admin action to the audit log, without passwords', async () => {
      await h.admin.post('/api/v1/users', {
        username: 'op',
        password: ADMIN_PASSWORD,
        role: 'operator',
      });
      const log = await h.admin.get<{ items: Array<{ action: string; detail: unknown }> }>(
        '/api/v1/audit',
      );
      const actions = log.items.map((e) => e.action);
      assert.ok(
        actions.includes('user.create') &&
          actions.includes('token.create') &&
          actions.includes('auth.login'),
      );
      assert.doesNotMatch(JSON.stringify(log), /correct horse/);
    });
    it('treats SQL-injection-shaped filter input as plain text', async () => {
      const d = h.device();
      await d.enrol(inventory(), h.token);
      for (const q of ["' OR 1=1 --", '%', '_', "x'); DROP TABLE devices; --", '\\']) {
        for (const key of ['search', 'compatible', 'tag', 'release', 'channel']) {
          const r = await h.admin.request('GET', `/api/v1/devices?${key}=${encodeURIComponent(q)}`);
          if (r.status === 400) continue; // refused by the schema (not a valid name): also safe
          assert.equal(r.status, 200, `${key}=${q}`);
          assert.equal((r.body as { total: number }).total, 0, `${key}=${q}`);
        }
      }
      const all = await h.admin.get<{ total: number }>('/api/v1/devices');
      assert.equal(all.total, 1);
      const found = await h.admin.get<{ total: number }>(
        `/api/v1/devices?search=${d.id.slice(4, 12)}&tag=&compatible=acme-widget`.replace(
          '&tag=',
          '',
        ),
      );
      assert.equal(found.total, 1);
    });
  });
}
