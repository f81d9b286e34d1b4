/**
 * The daemon's local API: HTTP/1.1 with JSON bodies over a Unix socket (reference:
 * docs/daemon.md). Access control is the socket's mode (0660): whoever may connect may update.
 */
import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { FerryError, withContext, type ErrorCode } from '@ferry/core';
import type { Daemon, StampedEvent } from './daemon.ts';
import {
  parseInstallBody,
  parseMarkBody,
  parseRebaseBody,
  readJsonBody,
} from './daemon-api-body.ts';

/** Requests are a few hundred bytes; anything larger is refused before it is buffered. */
export const MAX_REQUEST_BYTES = 64 * 1024;
/** An event stream client this far behind is dropped rather than buffered without end. */
const MAX_STREAM_BACKLOG = 1024 * 1024;

/** HTTP status for an error code, in one place. */
export function httpStatusFor(code: ErrorCode): number {
  switch (code) {
    case 'DAEMON_REQUEST_INVALID':
    case 'USAGE':
      return 400;
    case 'DAEMON_ROUTE_UNKNOWN':
      return 404;
    case 'DAEMON_BUSY':
      return 409;
    case 'DAEMON_STOPPING':
      return 503;
    case 'INTERNAL':
    case 'IO':
    case 'TOOL_MISSING':
    case 'TOOL_FAILED':
      return 500;
    default:
      // A refusal of the request's content (downgrade, incompatible bundle, no rollback target).
      return 422;
  }
}

type Route = { method: 'GET' | 'POST'; run: (d: Daemon, body: unknown) => Promise<unknown> };

const ROUTES: Record<string, Route> = {
  '/v1/status': { method: 'GET', run: (d) => d.status() },
  '/v1/check': { method: 'POST', run: (d) => d.check() },
  '/v1/cycle': { method: 'POST', run: (d) => d.runCycle() },
  '/v1/install': { method: 'POST', run: (d, b) => d.install(parseInstallBody(b)) },
  '/v1/mark': {
    method: 'POST',
    run: async (d, b) => {
      const { state, slot } = parseMarkBody(b);
      const s = await d.mark(state, slot);
      return { slot: s.name, bootname: s.bootname, marked: state };
    },
  },
  '/v1/rollback': { method: 'POST', run: (d) => d.rollback() },
  '/v1/rebase': { method: 'POST', run: (d, b) => d.rebase(parseRebaseBody(b).channel) },
};

/** A listening API server. */
export interface DaemonApiServer {
  socket: string;
  /** Ends event streams, stops listening and removes the socket file. */
  close(): Promise<void>;
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = `${JSON.stringify(value)}\n`;
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  res.end(body);
}

function sendError(res: ServerResponse, e: unknown, extra: Record<string, string> = {}): void {
  const fe = e instanceof FerryError ? e : withContext('daemon API', e);
  if (res.headersSent) return void res.destroy();
  for (const [k, v] of Object.entries(extra)) res.setHeader(k, v);
  const status = extra.allow ? 405 : httpStatusFor(fe.code);
  sendJson(res, status, { code: fe.code, message: fe.message });
}

/** GET /v1/events: the daemon's status, then every event as one JSON line, until closed. */
function streamEvents(daemon: Daemon, res: ServerResponse, streams: Set<ServerResponse>): void {
  res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
  const write = (e: object) => {
    // A reader that stopped reading must not make the daemon buffer every progress event.
    if (res.writableLength > MAX_STREAM_BACKLOG) return void res.destroy();
    res.write(`${JSON.stringify(e)}\n`);
  };
  write({ id: 'daemon.status', status: daemon.daemonStatus(), time: new Date().toISOString() });
  const off = daemon.subscribe((e: StampedEvent) => {
    write(e);
    if (e.id === 'daemon.stopped') res.end();
  });
  streams.add(res);
  res.on('close', () => {
    off();
    streams.delete(res);
  });
}

async function handle(
  daemon: Daemon,
  req: IncomingMessage,
  res: ServerResponse,
  streams: Set<ServerResponse>,
): Promise<void> {
  const path = new URL(req.url ?? '/', 'http://ferry').pathname;
  if (path === '/v1/events') {
    if (req.method !== 'GET') return sendError(res, routeError(req, path), { allow: 'GET' });
    return streamEvents(daemon, res, streams);
  }
  const route = ROUTES[path];
  if (!route) return sendError(res, routeError(req, path));
  if (req.method !== route.method)
    return sendError(res, routeError(req, path), { allow: route.method });
  const body = route.method === 'POST' ? await readJsonBody(req, MAX_REQUEST_BYTES) : undefined;
  sendJson(res, 200, await route.run(daemon, body));
}

function routeError(req: IncomingMessage, path: string): FerryError {
  return new FerryError(
    'DAEMON_ROUTE_UNKNOWN',
    `no route ${req.method ?? '?'} ${path.slice(0, 200)}`,
  );
}

/** Refuses a live daemon's socket; removes a stale one (a daemon that died without cleanup). */
async function clearSocketPath(path: string): Promise<void> {
  const st = await lstat(path).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return undefined;
    throw withContext(`checking ${path}`, e);
  });
  if (!st) return;
  if (!st.isSocket())
    throw new FerryError('IO', `${path} exists and is not a socket; refusing to replace it`);
  const alive = await new Promise<boolean>((resolve) => {
    const s = connect(path);
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
  if (alive)
    throw new FerryError('DAEMON_ALREADY_RUNNING', `another daemon is listening on ${path}`);
  await unlink(path);
}

/**
 * Serves the daemon's API on a Unix socket (mode 0660; parent directory created; a stale socket
 * file replaced).
 * @example
 * const api = await listenDaemonApi(daemon, agent.config.daemon.socket);
 * process.on('SIGTERM', () => void api.close());
 */
export async function listenDaemonApi(daemon: Daemon, socket: string): Promise<DaemonApiServer> {
  await mkdir(dirname(socket), { recursive: true, mode: 0o755 });
  await clearSocketPath(socket);
  const streams = new Set<ServerResponse>();
  const server: Server = createServer((req, res) => {
    handle(daemon, req, res, streams).catch((e: unknown) => sendError(res, e));
  });
  // Slow-loris bounds on the request side; a response may take as long as an install does.
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.maxConnections = 64;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socket, () => (server.off('error', reject), resolve()));
  });
  // Created under the umask (no write bit for group/others, so nobody else could connect in
  // between); now opened to the group.
  await chmod(socket, 0o660);
  return {
    socket,
    async close() {
      for (const s of streams) s.end();
      const closed = new Promise<void>((r) => server.close(() => r()));
      server.closeIdleConnections();
      // A client holding a request open must not keep the daemon from stopping.
      const force = setTimeout(() => server.closeAllConnections(), 5000);
      await closed;
      clearTimeout(force);
      await unlink(socket).catch(() => undefined);
    },
  };
}
