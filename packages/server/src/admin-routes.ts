/**
 * The admin JSON API the dashboard and scripts use (docs/server.md "Admin API"). Every route
 * needs a session and a minimum role; every state-changing route needs the CSRF header and
 * writes the audit log. Lists take filters as query parameters, checked by the same schema as
 * rollout filters.
 */
import { Hono, type Context } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import { FerryError } from '@ferry/core';
import {
  deviceFilterSchema,
  devicePatchSchema,
  loginSchema,
  rolloutRequestSchema,
  type Role,
  type SessionView,
} from '@ferry/protocol';
import {
  CSRF_HEADER,
  SESSION_COOKIE,
  checkCsrf,
  login,
  logout,
  requireRole,
  sessionUser,
} from './admin-auth.ts';
import { audit, listAudit } from './audit.ts';
import { parseBody, parseValue, type ServerContext } from './context.ts';
import { getDevice, listDevices, patchDevice, setDeviceStatus } from './devices.ts';
import { resolveRolloutRequest } from './admin-groups.ts';
import { adminManageRoutes, type AdminEnv } from './admin-manage-routes.ts';
import { adminReadRoutes } from './admin-read-routes.ts';
import { changeRolloutState, createRollout, getRollout, rolloutView } from './rollouts.ts';
import { importReleases } from './releases.ts';
import { readRepositoryReleases } from './repository.ts';
import { LoginLimiter } from './rate-limit.ts';

type Env = AdminEnv;
type Handler = (c: Context<Env>, body: Uint8Array) => Promise<Response>;

/** Page bounds from ?limit=&offset= (limit 1-500, default 50). */
export function paging(c: Context): { limit: number; offset: number } {
  const limit = Number(c.req.query('limit') ?? 50);
  const offset = Number(c.req.query('offset') ?? 0);
  if (
    !Number.isInteger(limit) ||
    limit < 1 ||
    limit > 500 ||
    !Number.isInteger(offset) ||
    offset < 0
  )
    throw new FerryError('SERVER_BAD_REQUEST', 'limit must be 1-500 and offset >= 0');
  return { limit, offset };
}

/** The device filter in a query string (?compatible=&channel=&tag=&status=&release=&search=). */
export function queryFilter(c: Context) {
  const q = c.req.queries();
  const one = (k: string) => q[k]?.[0];
  return parseValue(deviceFilterSchema, {
    compatible: one('compatible'),
    channel: one('channel'),
    status: one('status'),
    release: one('release'),
    search: one('search'),
    tags: q.tag,
  });
}

/** The request body for the audit log, passwords removed (the body was validated already). */
function auditDetail(body: Uint8Array): unknown {
  if (body.length === 0) return null;
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(body).toString('utf8'));
  } catch {
    return { body: '[not JSON]' }; // a route that ignores its body still gets audited
  }
  if (v && typeof v === 'object' && 'password' in v)
    (v as Record<string, unknown>).password = '[redacted]';
  return v;
}

/** Mounted at /api/v1. */
export function adminRoutes(ctx: ServerContext): Hono<Env> {
  const app = new Hono<Env>();
  const limiter = new LoginLimiter();

  const session =
    (min: Role, mutating: boolean) => async (c: Context<Env>, next: () => Promise<void>) => {
      const s = await sessionUser(ctx.db, getCookie(c, SESSION_COOKIE), ctx.now());
      if (mutating) checkCsrf(s.csrfToken, c.req.header(CSRF_HEADER));
      requireRole(s.user.role, min);
      c.set('username', s.user.username);
      c.set('role', s.user.role);
      await next();
    };
  const read = (path: string, min: Role, h: (c: Context<Env>) => Promise<Response>) =>
    app.get(path, session(min, false), (c) => h(c));
  /** A mutating route: role, CSRF, then the handler, then the audit entry. */
  const write = (path: string, min: Role, action: string, h: Handler) =>
    app.post(path, session(min, true), async (c) => {
      const body = new Uint8Array(await c.req.arrayBuffer());
      const res = await h(c, body);
      const target = c.get('auditTarget') ?? c.req.param('id') ?? null;
      await audit(ctx.db, c.get('username'), action, target, auditDetail(body), ctx.now());
      ctx.logger.log('info', 'admin.action', { username: c.get('username'), action, target });
      return res;
    });

  app.post('/auth/login', async (c) => {
    const body = parseBody(loginSchema, new Uint8Array(await c.req.arrayBuffer()));
    const now = ctx.now();
    limiter.check(body.username, now);
    let s;
    try {
      s = await login(ctx.db, body.username, body.password, now);
    } catch (e) {
      limiter.fail(body.username, now);
      throw e;
    }
    limiter.succeed(body.username);
    setCookie(c, SESSION_COOKIE, s.token, {
      httpOnly: true,
      secure: ctx.secureCookies,
      sameSite: 'Strict',
      path: '/api/',
      expires: new Date(s.expiresAt),
    });
    await audit(ctx.db, body.username, 'auth.login', null, null, now);
    return c.json({
      username: s.user.username,
      role: s.user.role,
      csrfToken: s.csrfToken,
      expiresAt: s.expiresAt,
    } satisfies SessionView);
  });
  app.post('/auth/logout', async (c) => {
    const s = await sessionUser(ctx.db, getCookie(c, SESSION_COOKIE), ctx.now());
    checkCsrf(s.csrfToken, c.req.header(CSRF_HEADER));
    await logout(ctx.db, s.idHash);
    deleteCookie(c, SESSION_COOKIE, { path: '/api/' });
    await audit(ctx.db, s.user.username, 'auth.logout', null, null, ctx.now());
    return c.json({ ok: true });
  });
  app.get('/auth/me', async (c) => {
    const s = await sessionUser(ctx.db, getCookie(c, SESSION_COOKIE), ctx.now());
    return c.json({
      username: s.user.username,
      role: s.user.role,
      csrfToken: s.csrfToken,
      expiresAt: s.expiresAt,
    } satisfies SessionView);
  });

  adminReadRoutes(ctx, read);
  adminManageRoutes(ctx, read, write);

  read('/devices/:id', 'viewer', async (c) => c.json(await getDevice(ctx.db, c.req.param('id')!)));
  read('/devices', 'viewer', async (c) => {
    const { limit, offset } = paging(c);
    return c.json(await listDevices(ctx.db, queryFilter(c), limit, offset));
  });
  read('/audit', 'admin', async (c) => {
    const { limit, offset } = paging(c);
    return c.json(await listAudit(ctx.db, limit, offset));
  });

  for (const [verb, status] of [
    ['approve', 'accepted'],
    ['reject', 'rejected'],
  ] as const)
    write(`/devices/:id/${verb}`, 'operator', `device.${verb}`, async (c) => {
      await setDeviceStatus(ctx.db, c.req.param('id')!, status, ctx.now());
      ctx.devices.forget(c.req.param('id')!);
      return c.json({ ok: true });
    });
  write('/devices/:id', 'operator', 'device.update', async (c, b) => {
    await patchDevice(ctx.db, c.req.param('id')!, parseBody(devicePatchSchema, b));
    return c.json({ ok: true });
  });
  write('/releases/import', 'operator', 'release.import', async (c) => {
    if (!ctx.repository)
      throw new FerryError('SERVER_CONFIG', 'the server has no repository configured');
    const found = await readRepositoryReleases(ctx.repository.source, ctx.repository.trustedRoot);
    return c.json(await importReleases(ctx.db, found, ctx.now()));
  });
  write('/rollouts', 'operator', 'rollout.create', async (c, b) => {
    const body = await resolveRolloutRequest(ctx.db, parseBody(rolloutRequestSchema, b));
    const id = await createRollout(ctx.db, body, c.get('username'), ctx.now());
    c.set('auditTarget', id);
    ctx.rollouts.invalidate();
    return c.json(await rolloutView(ctx.db, await getRollout(ctx.db, id)), 201);
  });
  for (const action of ['pause', 'resume', 'cancel'] as const)
    write(`/rollouts/:id/${action}`, 'operator', `rollout.${action}`, async (c) => {
      await changeRolloutState(ctx.db, c.req.param('id')!, action, ctx.now());
      ctx.rollouts.invalidate();
      return c.json(await rolloutView(ctx.db, await getRollout(ctx.db, c.req.param('id')!)));
    });
  return app;
}
