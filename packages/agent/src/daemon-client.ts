/**
 * A client of the daemon's local API (docs/daemon.md), used by the `ferry` CLI when a daemon
 * runs. Errors arrive as FerryErrors with the daemon's code.
 */
import { request, type IncomingMessage } from 'node:http';
import { connect } from 'node:net';
import { ERROR_CODES, FerryError, type ErrorCode } from '@ferry/core';
import type { StatusReport } from './agent.ts';
import type { DaemonCheck, DaemonInstallOutcome, DaemonStatus, StampedEvent } from './daemon.ts';

/** Responses are a few KiB; a socket answering more is not our daemon. */
const MAX_RESPONSE_BYTES = 4 * 1024 * 1024;
const MAX_EVENT_LINE = 1024 * 1024;

/** Whether a daemon answers on `socket`: 'up', 'down' (no socket, nobody listening) or 'denied'. */
export function probeDaemon(socket: string, timeoutMs = 2000): Promise<'up' | 'down' | 'denied'> {
  return new Promise((resolve) => {
    const s = connect(socket);
    const timer = setTimeout(() => (s.destroy(), resolve('down')), timeoutMs);
    s.once('connect', () => (clearTimeout(timer), s.destroy(), resolve('up')));
    s.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(e.code === 'EACCES' || e.code === 'EPERM' ? 'denied' : 'down');
    });
  });
}

function unavailable(socket: string, e: NodeJS.ErrnoException): FerryError {
  const why = e.code === 'EACCES' ? 'permission denied (run as root or join its group)' : e.message;
  return new FerryError('DAEMON_UNAVAILABLE', `daemon socket ${socket}: ${why}`, { cause: e });
}

async function readBounded(res: IncomingMessage): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of res as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > MAX_RESPONSE_BYTES)
      throw new FerryError('DAEMON_RESPONSE_INVALID', `response over ${MAX_RESPONSE_BYTES} bytes`);
    parts.push(c);
  }
  return Buffer.concat(parts);
}

/** A `{code, message}` error body back into a FerryError; anything else is malformed. */
function errorFrom(status: number, body: unknown): FerryError {
  const o = body as { code?: unknown; message?: unknown } | undefined;
  if (typeof o?.code === 'string' && Object.hasOwn(ERROR_CODES, o.code))
    return new FerryError(o.code as ErrorCode, typeof o.message === 'string' ? o.message : '');
  return new FerryError('DAEMON_RESPONSE_INVALID', `HTTP ${status} without a Ferry error body`);
}

/**
 * Talks to `ferry daemon` over its Unix socket.
 * @example
 * const d = new DaemonClient('/run/ferry/ferry.sock');
 * const r = await d.install({ source: '/media/usb/gw-1.3.0.fbd' }, (e) => console.log(e.id));
 */
export class DaemonClient {
  readonly socket: string;

  constructor(socket: string) {
    this.socket = socket;
  }

  status(): Promise<{ daemon: DaemonStatus; system: StatusReport }> {
    return this.#call('GET', '/v1/status');
  }

  check(): Promise<DaemonCheck> {
    return this.#call('POST', '/v1/check', {});
  }

  /** POST /v1/install; with `onEvent`, the events stream is followed while it runs. */
  install(
    req: { source?: string; reboot?: boolean } = {},
    onEvent?: (e: StampedEvent) => void,
  ): Promise<DaemonInstallOutcome> {
    const call = () => this.#call<DaemonInstallOutcome>('POST', '/v1/install', req);
    return onEvent ? this.#following(call, onEvent) : call();
  }

  /** POST /v1/cycle: one scheduled cycle now (the fleet server's when [server] is set). */
  cycle(onEvent?: (e: StampedEvent) => void): Promise<DaemonInstallOutcome> {
    const call = () => this.#call<DaemonInstallOutcome>('POST', '/v1/cycle', {});
    return onEvent ? this.#following(call, onEvent) : call();
  }

  mark(
    state: 'good' | 'bad' | 'active',
    slot?: string,
  ): Promise<{ slot: string; bootname?: string; marked: string }> {
    return this.#call('POST', '/v1/mark', { state, ...(slot ? { slot } : {}) });
  }

  rollback(): Promise<{ from: string; to: string }> {
    return this.#call('POST', '/v1/rollback', {});
  }

  rebase(channel: string): Promise<{ channel: string }> {
    return this.#call('POST', '/v1/rebase', { channel });
  }

  /**
   * Follows GET /v1/events until the daemon ends the stream or `signal` aborts. The first event
   * is `daemon.status` (a snapshot); `onOpen` runs once it has arrived.
   */
  events(
    onEvent: (e: StampedEvent) => void,
    signal?: AbortSignal,
    onOpen?: () => void,
  ): Promise<void> {
    return new Promise((resolve, reject) => {
      const req = request({ socketPath: this.socket, path: '/v1/events', method: 'GET', signal });
      req.on('error', (e: NodeJS.ErrnoException) =>
        signal?.aborted ? resolve() : reject(unavailable(this.socket, e)),
      );
      req.on('response', (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          return reject(
            new FerryError('DAEMON_RESPONSE_INVALID', `events: HTTP ${res.statusCode}`),
          );
        }
        let buf = '';
        let opened = false;
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buf += chunk;
          let nl: number;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl);
            buf = buf.slice(nl + 1);
            if (line.trim() === '') continue;
            let e: StampedEvent;
            try {
              e = JSON.parse(line) as StampedEvent;
            } catch {
              return void (
                req.destroy(),
                reject(new FerryError('DAEMON_RESPONSE_INVALID', 'events: a line is not JSON'))
              );
            }
            onEvent(e);
            if (!opened) {
              opened = true;
              onOpen?.();
            }
          }
          if (buf.length > MAX_EVENT_LINE) {
            req.destroy();
            reject(new FerryError('DAEMON_RESPONSE_INVALID', 'events: a line is too long'));
          }
        });
        res.on('end', () => resolve());
        res.on('error', () => resolve());
      });
      req.end();
    });
  }

  /**
   * Runs `call` while following the events stream, subscribed before the call starts. The
   * answer and the stream travel on two connections: after the answer, the stream is read
   * until the operation's own end event (at most 2 s), so no event of it is lost.
   */
  async #following<T>(call: () => Promise<T>, onEvent: (e: StampedEvent) => void): Promise<T> {
    const ac = new AbortController();
    let open = (): void => undefined;
    let ended = (): void => undefined;
    const opened = new Promise<void>((r) => (open = r));
    const opEnd = new Promise<void>((r) => (ended = r));
    const stream = this.events(
      (e) => {
        if (e.id === 'daemon.status') return;
        onEvent(e);
        if (e.id === 'daemon.operation-finished' || e.id === 'daemon.operation-failed') ended();
      },
      ac.signal,
      open,
    );
    await Promise.race([opened, stream]);
    try {
      const r = await call();
      await Promise.race([opEnd, stream, new Promise((r) => setTimeout(r, 2000).unref())]);
      return r;
    } finally {
      ac.abort();
      await stream.catch(() => undefined);
    }
  }

  #call<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise<T>((resolve, reject) => {
      const req = request({
        socketPath: this.socket,
        path,
        method,
        headers: payload
          ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }
          : {},
      });
      req.on('error', (e: NodeJS.ErrnoException) => reject(unavailable(this.socket, e)));
      req.on('response', (res) => {
        readBounded(res)
          .then((bytes) => {
            let v: unknown;
            try {
              v = JSON.parse(bytes.toString('utf8'));
            } catch {
              throw new FerryError('DAEMON_RESPONSE_INVALID', `${path}: response is not JSON`);
            }
            if (res.statusCode === 200) resolve(v as T);
            else reject(errorFrom(res.statusCode ?? 0, v));
          })
          .catch(reject);
      });
      req.end(payload);
    });
  }
}
