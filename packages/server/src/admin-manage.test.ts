/**
 * The token, group and user routes of the admin API, and their rows of the authorisation
 * matrix, on SQLite and (capability `postgres`) PostgreSQL.
 */
import { describe, it, before, after, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type {
  EnrolmentTokenCreated,
  EnrolmentTokenView,
  GroupView,
  RolloutView,
  UserView,
} from '@ferry/protocol';
import { have, needs, startPostgres, type Postgres } from '@ferry/testing';
import { AdminClient } from './admin-client.ts';
import { mergeFilters } from './admin-groups.ts';
import { ADMIN_PASSWORD, inventory, startHarness, type Harness } from './test-harness.ts';

const code = (r: { body: unknown }) => (r.body as { code?: string } | null)?.code;
const RELEASE = { compatible: 'acme-widget', version: '1.3.0' };

/** Every mutating route added for tokens, groups and users, with a valid body. */
const OPERATOR_ROUTES: Array<[string, unknown]> = [
  ['/api/v1/enrolment-tokens', {}],
  ['/api/v1/enrolment-tokens/0123456789abcdef/revoke', {}],
  ['/api/v1/groups', { name: 'g2', filter: {} }],
  ['/api/v1/groups/g1/delete', {}],
];
const ADMIN_ROUTES: Array<[string, unknown]> = [
  ['/api/v1/users', { username: 'eve', password: 'x'.repeat(12), role: 'admin' }],
  ['/api/v1/users/admin/role', { role: 'viewer' }],
  ['/api/v1/users/admin/delete', {}],
];

function suite(newDb: () => Promise<string>): void {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness(await newDb());
  });
  afterEach(async () => {
    await h.close();
  });
  async function userWith(role: string): Promise<AdminClient> {
    await h.admin.post('/api/v1/users', { username: role, password: ADMIN_PASSWORD, role });
    const c = new AdminClient(h.url);
    await c.login(role, ADMIN_PASSWORD);
    return c;
  }

  describe('when a viewer or operator calls a route above its role', () => {
    it('refuses it with SERVER_FORBIDDEN and changes nothing', async () => {
      await h.admin.post('/api/v1/groups', { name: 'g1', filter: {} });
      const v = await userWith('viewer');
      const o = await userWith('operator');
      for (const [path, body] of [...OPERATOR_ROUTES, ...ADMIN_ROUTES]) {
        const r = await v.request('POST', path, body);
        assert.equal(r.status, 403, `viewer ${path}`);
        assert.equal(code(r), 'SERVER_FORBIDDEN');
      }
      for (const [path, body] of ADMIN_ROUTES) {
        const r = await o.request('POST', path, body);
        assert.equal(r.status, 403, `operator ${path}`);
      }
      assert.equal((await o.request('GET', '/api/v1/users')).status, 403);
      assert.equal((await v.request('GET', '/api/v1/enrolment-tokens')).status, 200);
      const users = await h.admin.get<UserView[]>('/api/v1/users');
      assert.deepEqual(
        users.map((u) => `${u.username}:${u.role}`),
        ['admin:admin', 'operator:operator', 'viewer:viewer'],
      );
      assert.deepEqual(
        (await h.admin.get<GroupView[]>('/api/v1/groups')).map((g) => g.name),
        ['g1'],
      );
    });
    it('refuses every new route without a session or without the CSRF header', async () => {
      const anon = new AdminClient(h.url);
      for (const [path, body] of [...OPERATOR_ROUTES, ...ADMIN_ROUTES])
        assert.equal(code(await anon.request('POST', path, body)), 'SERVER_UNAUTHENTICATED', path);
      const noCsrf = await fetch(`${h.url}/api/v1/users/admin/role`, {
        method: 'POST',
        headers: { cookie: h.admin.cookie, 'content-type': 'application/json' },
        body: '{"role":"viewer"}',
      });
      assert.equal(((await noCsrf.json()) as { code: string }).code, 'SERVER_CSRF');
    });
  });

  describe('when an operator manages enrolment tokens', () => {
    it('lists a token without its secret and refuses it once revoked', async () => {
      const o = await userWith('operator');
      const t = await o.post<EnrolmentTokenCreated>('/api/v1/enrolment-tokens', {
        uses: 2,
        tags: ['lab'],
      });
      const listed = (await o.get<EnrolmentTokenView[]>('/api/v1/enrolment-tokens')).find(
        (x) => x.id === t.id,
      );
      assert.deepEqual(
        { state: listed?.state, usesLeft: listed?.usesLeft, tags: listed?.tags },
        { state: 'active', usesLeft: 2, tags: ['lab'] },
      );
      assert.doesNotMatch(JSON.stringify(await o.get('/api/v1/enrolment-tokens')), /fet_/);
      assert.equal((await h.device().enrol(inventory(), t.token)).body.status, 'accepted');
      await o.post(`/api/v1/enrolment-tokens/${t.id}/revoke`);
      const r = await h
        .device()
        .enrol(inventory(), t.token)
        .catch((e: { code: string }) => e);
      assert.equal((r as { code?: string }).code, 'DEVICE_ENROLMENT_REFUSED');
      const again = await o.request('POST', `/api/v1/enrolment-tokens/${t.id}/revoke`);
      assert.equal(code(again), 'SERVER_NOT_FOUND');
      const bad = await o.request(
        'POST',
        `/api/v1/enrolment-tokens/${encodeURIComponent('%')}/revoke`,
      );
      assert.equal(code(bad), 'SERVER_BAD_REQUEST');
    });
  });

  describe('when a rollout targets a saved group', () => {
    it('stores the group filter merged with its own, and still after the group is gone', async () => {
      await h.admin.post('/api/v1/groups', { name: 'lab', filter: { tags: ['lab'] } });
      const r = await h.admin.post<RolloutView>('/api/v1/rollouts', {
        name: 'to lab',
        release: RELEASE,
        channel: 'stable',
        group: 'lab',
        filter: { tags: ['eu'] },
        phases: [100],
      });
      assert.deepEqual(r.filter, { tags: ['eu', 'lab'] });
      await h.admin.post('/api/v1/groups/lab/delete');
      const again = await h.admin.get<RolloutView>(`/api/v1/rollouts/${r.id}`);
      assert.deepEqual(again.filter, { tags: ['eu', 'lab'] });
      const log = await h.admin.get<{ items: Array<{ action: string; target: string }> }>(
        '/api/v1/audit',
      );
      assert.ok(log.items.some((e) => e.action === 'rollout.create' && e.target === r.id));
      assert.ok(log.items.some((e) => e.action === 'group.delete' && e.target === 'lab'));
    });
    it('refuses an unknown group and a group of another channel', async () => {
      const body = { name: 'x', release: RELEASE, channel: 'stable', phases: [100] };
      const unknown = await h.admin.request('POST', '/api/v1/rollouts', { ...body, group: 'nope' });
      assert.equal(code(unknown), 'SERVER_NOT_FOUND');
      await h.admin.post('/api/v1/groups', { name: 'beta', filter: { channel: 'beta' } });
      const other = await h.admin.request('POST', '/api/v1/rollouts', { ...body, group: 'beta' });
      assert.equal(code(other), 'SERVER_BAD_REQUEST');
      assert.equal((await h.admin.get<RolloutView[]>('/api/v1/rollouts')).length, 0);
    });
  });

  describe('when an admin manages users', () => {
    it('changes a role with immediate effect and deletes a user with their sessions', async () => {
      const o = await userWith('operator');
      assert.equal(
        (await o.request('POST', '/api/v1/groups', { name: 'a', filter: {} })).status,
        201,
      );
      await h.admin.post('/api/v1/users/operator/role', { role: 'viewer' });
      const r = await o.request('POST', '/api/v1/groups', { name: 'b', filter: {} });
      assert.equal(code(r), 'SERVER_FORBIDDEN');
      await h.admin.post('/api/v1/users/operator/delete');
      assert.equal(code(await o.request('GET', '/api/v1/devices')), 'SERVER_UNAUTHENTICATED');
      const names = (await h.admin.get<UserView[]>('/api/v1/users')).map((u) => u.username);
      assert.deepEqual(names, ['admin']);
    });
    it('keeps the last admin and refuses deleting oneself', async () => {
      const demote = await h.admin.request('POST', '/api/v1/users/admin/role', {
        role: 'operator',
      });
      assert.equal(code(demote), 'SERVER_CONFLICT');
      assert.equal(
        code(await h.admin.request('POST', '/api/v1/users/admin/delete')),
        'SERVER_CONFLICT',
      );
      const unknown = await h.admin.request('POST', '/api/v1/users/ghost/role', { role: 'viewer' });
      assert.equal(code(unknown), 'SERVER_NOT_FOUND');
      await h.admin.post('/api/v1/users', {
        username: 'root2',
        password: ADMIN_PASSWORD,
        role: 'admin',
      });
      await h.admin.post('/api/v1/users/admin/role', { role: 'operator' }); // another admin exists now
      const users = await h.admin.request('GET', '/api/v1/users');
      assert.equal(code(users), 'SERVER_FORBIDDEN'); // the demotion applies to the open session
    });
  });
}

describe('mergeFilters', () => {
  describe('when both filters set fields', () => {
    it('joins tags and attributes and keeps equal scalars', () => {
      assert.deepEqual(
        mergeFilters(
          { tags: ['b'], channel: 's', attributes: { x: '1' } },
          { tags: ['a', 'b'], channel: 's', attributes: { y: '2' } },
        ),
        { tags: ['a', 'b'], channel: 's', attributes: { x: '1', y: '2' } },
      );
    });
  });
  describe('when the filters disagree', () => {
    it('throws SERVER_BAD_REQUEST', () => {
      assert.throws(() => mergeFilters({ release: '1' }, { release: '2' }), {
        code: 'SERVER_BAD_REQUEST',
      });
      assert.throws(() => mergeFilters({ attributes: { x: '1' } }, { attributes: { x: '2' } }), {
        code: 'SERVER_BAD_REQUEST',
      });
    });
  });
});

let pg: Postgres | undefined;
let n = 0;
describe('admin management routes on SQLite', () => {
  suite(() =>
    Promise.resolve(join(mkdtempSync(join(tmpdir(), 'ferry-admin-')), `fleet-${n++}.db`)),
  );
});
describe('admin management routes on PostgreSQL', needs('postgres'), () => {
  before(async () => {
    if (have('postgres')) pg = await startPostgres();
  });
  after(async () => {
    await pg?.stop();
  });
  suite(() => pg!.createDatabase(`admin_${n++}`));
});
