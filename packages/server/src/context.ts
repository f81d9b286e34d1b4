/**
 * What every route handler shares, and the helpers that read a bounded, schema-checked body:
 * routes never touch unvalidated input.
 */
import type { Kysely } from 'kysely';
import type { z } from 'zod';
import { FerryError } from '@ferry/core';
import type { FleetDb } from './db-schema.ts';
import type { Director } from './director.ts';
import type { Logger } from './logger.ts';
import type { Metrics } from './metrics.ts';
import type { DeviceAuthenticator } from './device-auth.ts';
import type { RolloutCache } from './assign.ts';
import type { CheckinStore } from './checkin-store.ts';

/** The server's shared state. */
export interface ServerContext {
  db: Kysely<FleetDb>;
  director: Director;
  logger: Logger;
  metrics: Metrics;
  devices: DeviceAuthenticator;
  /** The check-in hot path's statements (database.ts). */
  checkins: CheckinStore;
  rollouts: RolloutCache;
  now: () => number;
  pollSeconds: number;
  repositoryUrl: string | null;
  repository: { source: string; trustedRoot?: Buffer } | undefined;
  secureCookies: boolean;
  /** Runs rollout evaluation soon (after a final report), at most once per interval. */
  scheduleEvaluation(): void;
}

/** Parses `bytes` as JSON and checks it against `schema`; SERVER_BAD_REQUEST otherwise. */
export function parseBody<S extends z.ZodType>(schema: S, bytes: Uint8Array): z.infer<S> {
  let json: unknown;
  try {
    json = bytes.length === 0 ? {} : JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    throw new FerryError('SERVER_BAD_REQUEST', 'body is not valid JSON');
  }
  return parseValue(schema, json);
}

/** Checks an already-parsed value against `schema`; SERVER_BAD_REQUEST with the first issue. */
export function parseValue<S extends z.ZodType>(schema: S, value: unknown): z.infer<S> {
  const r = schema.safeParse(value);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new FerryError(
      'SERVER_BAD_REQUEST',
      `${i?.path.join('.') || 'body'}: ${i?.message ?? 'invalid'}`,
    );
  }
  return r.data;
}

/**
 * Records one answered HTTP request: the latency histogram and request counter by route and
 * status, and a debug log line. Hono's middleware and the check-in route both call it.
 */
export function recordRequest(
  ctx: ServerContext,
  r: { method: string; path: string; route: string; status: number; seconds: number },
): void {
  ctx.metrics.observe(r.route, r.seconds);
  ctx.metrics.inc('ferry_http_requests_total', 'HTTP requests by route and status', {
    route: r.route,
    status: String(r.status),
  });
  ctx.logger.log('debug', 'http.request', {
    method: r.method,
    path: r.path,
    status: r.status,
    ms: r.seconds * 1000,
  });
}
