/**
 * `POST /api/v1/device/checkin` straight on node:http, ahead of Hono: the request every device
 * sends every poll interval skips the web `Request`/`Response` objects and the middleware
 * chain, which cost more than the check-in's own transaction. It keeps what the Hono route
 * has: the 64 KiB body cap, the one error mapping (http-errors.ts `errorAnswer`) and the same
 * metrics. Every other request, and a check-in with a query string or an absolute target, goes
 * to Hono.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { FerryError } from '@ferry/core';
import { checkIn } from './checkin.ts';
import { recordRequest, type ServerContext } from './context.ts';
import { errorAnswer } from './http-errors.ts';

/** The route's path, and its label in the metrics (as Hono's routePath would give it). */
export const CHECKIN_PATH = '/api/v1/device/checkin';

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(', ') : v;
}

/**
 * Handles `req` when it is a check-in and returns true; else returns false and leaves it
 * alone. `maxBody`: the device body cap.
 */
export function handleCheckin(
  ctx: ServerContext,
  maxBody: number,
  req: IncomingMessage,
  res: ServerResponse,
): boolean {
  if (req.method !== 'POST' || req.url !== CHECKIN_PATH) return false;
  const t0 = performance.now();
  const reply = (status: number, value: unknown) => {
    const body = JSON.stringify(value);
    res.writeHead(status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
    });
    res.end(body);
    recordRequest(ctx, {
      method: 'POST',
      path: CHECKIN_PATH,
      route: CHECKIN_PATH,
      status,
      seconds: (performance.now() - t0) / 1000,
    });
  };
  const fail = (e: unknown) => {
    const a = errorAnswer(e, ctx.logger, CHECKIN_PATH);
    reply(a.status, a.body);
  };
  const tooLarge = () =>
    fail(new FerryError('SERVER_BODY_TOO_LARGE', `request body exceeds ${maxBody} bytes`));
  if (Number(req.headers['content-length'] ?? 0) > maxBody) {
    tooLarge();
    req.resume();
    return true;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  let over = false;
  req.on('data', (c: Buffer) => {
    size += c.length;
    if (size > maxBody) over = true;
    else chunks.push(c);
  });
  req.on('error', () => res.destroy());
  req.on('end', () => {
    if (over) return tooLarge();
    const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
    const raw = { method: 'POST', path: CHECKIN_PATH, header: (n: string) => header(req, n), body };
    checkIn(ctx, raw, ctx.now()).then((r) => reply(200, r), fail);
  });
  return true;
}
