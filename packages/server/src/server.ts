/**
 * `createServer`: the fleet server as a Hono app over an open database, with start and stop.
 * Routes: /healthz, /metrics, /api/v1/director/key, the device API (device-routes.ts), the
 * admin API (admin-routes.ts) and, given a repository directory, the repository at /repo/.
 */
import { createServer as createHttpServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { relative, resolve } from 'node:path';
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { getRequestListener } from '@hono/node-server';
import { serveStatic } from '@hono/node-server/serve-static';
import { FerryError } from '@ferry/core';
import { createUser } from './admin-auth.ts';
import { adminRoutes } from './admin-routes.ts';
import { RolloutCache } from './assign.ts';
import { recordRequest, type ServerContext } from './context.ts';
import type { Database } from './database.ts';
import { handleCheckin } from './checkin-route.ts';
import { DeviceAuthenticator } from './device-auth.ts';
import { deviceRoutes } from './device-routes.ts';
import { Director } from './director.ts';
import { errorResponse } from './http-errors.ts';
import { nullLogger, type Logger } from './logger.ts';
import { Metrics } from './metrics.ts';
import { evaluateRollouts } from './rollouts.ts';

/** Options of createServer. */
export interface ServerOptions {
  database: Database;
  /** Signs assignments; a fresh key per start if omitted (devices then re-pin: tests only). */
  director?: Director;
  logger?: Logger;
  /** Release repository to import from: a directory or an http(s) URL, and a trusted root. */
  repository?: { source: string; trustedRoot?: Buffer };
  /** Repository URL devices download from (a CDN); default /repo/ of this server for a directory. */
  repositoryUrl?: string;
  /** Set the Secure flag on session cookies (default true; false only for plain-HTTP tests). */
  secureCookies?: boolean;
  /** How often rollouts are evaluated, in ms (default 5000; 0: only by `evaluate()`). */
  evaluateIntervalMs?: number;
  pollSeconds?: number;
  /** How long a device session lasts, in ms (default a day). */
  sessionTtlMs?: number;
  /** The built dashboard (packages/web/dist) and the path it is served under (default /ui). */
  dashboard?: { dir: string; path?: string };
  /** First admin, created if the database has no users. */
  bootstrapAdmin?: { username: string; password: string };
  now?: () => number;
}

/** A created server. */
export interface FleetServer {
  app: Hono;
  context: ServerContext;
  /** Listens on `port` (0: any free port); resolves with the base URL. */
  listen(port: number, host?: string): Promise<string>;
  /** Evaluates rollouts now (advance, pause, complete). */
  evaluate(): Promise<void>;
  /** Stops listening and the timers; the caller closes the database. */
  close(): Promise<void>;
}

const DEVICE_BODY_MAX = 64 * 1024;
const ADMIN_BODY_MAX = 256 * 1024;

function limit(maxSize: number) {
  return bodyLimit({
    maxSize,
    onError: () => {
      throw new FerryError('SERVER_BODY_TOO_LARGE', `request body exceeds ${maxSize} bytes`);
    },
  });
}

function instrument(app: Hono, ctx: ServerContext): void {
  app.use(async (c, next) => {
    const t0 = performance.now();
    await next();
    recordRequest(ctx, {
      method: c.req.method,
      path: c.req.path,
      route: c.req.routePath || 'unmatched',
      status: c.res.status,
      seconds: (performance.now() - t0) / 1000,
    });
  });
}

async function gauges(ctx: ServerContext) {
  const devices = await ctx.db
    .selectFrom('devices')
    .select(['status', (eb) => eb.fn.countAll<number>().as('n')])
    .groupBy('status')
    .execute();
  const rollouts = await ctx.db
    .selectFrom('rollouts')
    .select(['state', (eb) => eb.fn.countAll<number>().as('n')])
    .groupBy('state')
    .execute();
  return {
    ferry_devices: ['Devices by status', devices.map((d) => [{ status: d.status }, Number(d.n)])],
    ferry_rollouts: ['Rollouts by state', rollouts.map((r) => [{ state: r.state }, Number(r.n)])],
  } as Parameters<Metrics['render']>[0];
}

function routes(app: Hono, ctx: ServerContext, opts: ServerOptions): void {
  app.get('/healthz', async (c) => {
    await ctx.db.selectFrom('users').select('username').limit(1).execute();
    return c.json({ ok: true });
  });
  app.get('/metrics', async (c) =>
    c.text(ctx.metrics.render(await gauges(ctx)), 200, {
      'content-type': 'text/plain; version=0.0.4',
    }),
  );
  app.get('/api/v1/director/key', (c) => c.json(ctx.director.publicKey));
  app.use('/api/v1/device/*', limit(DEVICE_BODY_MAX));
  app.route('/api/v1/device', deviceRoutes(ctx));
  app.use('/api/v1/*', limit(ADMIN_BODY_MAX));
  app.route('/api/v1', adminRoutes(ctx));
  const src = opts.repository?.source;
  if (src && !/^https?:\/\//.test(src)) {
    const root = relative(process.cwd(), resolve(src)) || '.';
    app.use('/repo/*', serveStatic({ root, rewriteRequestPath: (p) => p.slice('/repo'.length) }));
  }
  if (opts.dashboard) dashboardRoutes(app, opts.dashboard);
  app.notFound((c) =>
    c.json({ code: 'SERVER_NOT_FOUND', message: `no route ${c.req.method} ${c.req.path}` }, 404),
  );
}

/** The dashboard's static files under a strict content security policy. */
function dashboardRoutes(app: Hono, d: { dir: string; path?: string }): void {
  const base = (d.path ?? '/ui').replace(/\/$/, '');
  const root = relative(process.cwd(), resolve(d.dir)) || '.';
  app.use(`${base}/*`, async (c, next) => {
    await next();
    c.header(
      'content-security-policy',
      "default-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    );
  });
  app.get(base, (c) => c.redirect(`${base}/`));
  app.get('/', (c) => c.redirect(`${base}/`));
  app.use(`${base}/*`, serveStatic({ root, rewriteRequestPath: (p) => p.slice(base.length) }));
}

/**
 * Creates the fleet server over an open, migrated database.
 *
 * @example
 * const database = await openDatabase('ferry.db');
 * const server = await createServer({ database, repository: { source: '/srv/ferry' },
 *   bootstrapAdmin: { username: 'admin', password }, logger: jsonLogger(process.stdout) });
 * const url = await server.listen(8080);
 */
export async function createServer(opts: ServerOptions): Promise<FleetServer> {
  const db = opts.database.db;
  const now = opts.now ?? Date.now;
  let timer: NodeJS.Timeout | undefined;
  let evaluating: Promise<void> | undefined;
  let soon: NodeJS.Timeout | undefined;
  let closed = false;
  const director = opts.director ?? Director.ephemeral();
  const ctx: ServerContext = {
    db,
    director,
    logger: opts.logger ?? nullLogger,
    metrics: new Metrics(),
    devices: new DeviceAuthenticator(
      db,
      opts.database.checkins,
      director.sessionSecret,
      opts.sessionTtlMs,
    ),
    checkins: opts.database.checkins,
    rollouts: new RolloutCache(db),
    now,
    pollSeconds: opts.pollSeconds ?? 60,
    repositoryUrl: opts.repositoryUrl ?? (opts.repository ? '/repo/' : null),
    repository: opts.repository,
    secureCookies: opts.secureCookies ?? true,
    // After a final report: evaluate within 250 ms, so an auto-pause is not a whole interval late.
    scheduleEvaluation: () => {
      if (soon || closed) return;
      soon = setTimeout(() => {
        soon = undefined;
        evaluate().catch((e: unknown) =>
          ctx.logger.log('error', 'rollout.evaluate-failed', { message: String(e) }),
        );
      }, 250);
    },
  };
  if (opts.bootstrapAdmin) {
    const any = await db.selectFrom('users').select('username').limit(1).executeTakeFirst();
    if (!any)
      await createUser(
        db,
        opts.bootstrapAdmin.username,
        opts.bootstrapAdmin.password,
        'admin',
        now(),
      );
  }
  const app = new Hono();
  app.onError(errorResponse(ctx.logger));
  instrument(app, ctx);
  routes(app, ctx, opts);

  const evaluate = (): Promise<void> =>
    (evaluating ??= (async () => {
      const decisions = await evaluateRollouts(db, now());
      for (const [id, d] of decisions)
        if (d.kind !== 'none')
          ctx.logger.log(d.kind === 'pause' ? 'warn' : 'info', `rollout.${d.kind}`, {
            rolloutId: id,
            ...d,
          });
      if ([...decisions.values()].some((d) => d.kind !== 'none')) ctx.rollouts.invalidate();
      await ctx.devices.pruneNonces(now());
    })().finally(() => (evaluating = undefined)));

  const interval = opts.evaluateIntervalMs ?? 5000;
  let server: Server | undefined;
  return {
    app,
    context: ctx,
    evaluate,
    listen(port, host = '127.0.0.1') {
      if (interval > 0)
        timer = setInterval(() => {
          evaluate().catch((e: unknown) =>
            ctx.logger.log('error', 'rollout.evaluate-failed', { message: String(e) }),
          );
        }, interval);
      // Check-ins go straight to their handler (checkin-route.ts), the rest through Hono.
      const hono = getRequestListener(app.fetch);
      const s = createHttpServer((req, res) => {
        if (!handleCheckin(ctx, DEVICE_BODY_MAX, req, res)) void hono(req, res);
      });
      server = s;
      return new Promise((res, rej) => {
        s.once('error', rej);
        s.listen(port, host, () => {
          const info = s.address() as AddressInfo;
          res(`http://${host.includes(':') ? `[${host}]` : host}:${info.port}`);
        });
      });
    },
    async close() {
      closed = true;
      if (timer) clearInterval(timer);
      if (soon) clearTimeout(soon);
      await evaluating;
      await new Promise<void>((res) => (server ? server.close(() => res()) : res()));
    },
  };
}
