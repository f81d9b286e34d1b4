/**
 * Fetching files over HTTP/1.1 with the limits every download needs: a fixed pool of keep-alive
 * connections, a byte cap per response (endless-data attack), a per-request deadline and a
 * minimum transfer rate (slow-retrieval attack), and an optional bandwidth limit shared by all
 * connections. Bytes are only handed back whole; the caller verifies them before any use.
 */
import http from 'node:http';
import https from 'node:https';
import { FerryError } from '@ferry/core';

/** Limits of an {@link HttpFetcher}; see [update] in docs/config.md. */
export interface FetchLimits {
  /** Connections kept open and used in parallel. */
  parallel: number;
  /** Deadline of one request, headers and body together, in milliseconds. */
  timeoutMs: number;
  /** Bytes per second a response must keep up over each window; 0 turns the check off. */
  minRate: number;
  /** Length of a min-rate window in milliseconds (default 10 s). */
  minRateWindowMs?: number;
  /** Bytes per second over all connections; 0 = unlimited. */
  bandwidth: number;
  /** Aborts every request of this fetcher (a daemon shutting down). */
  signal?: AbortSignal;
}

/** Options of one {@link HttpFetcher.get}. */
export interface GetOptions {
  /** The most bytes the response may have: more is FETCH_TOO_LARGE. */
  maxBytes: number;
  /** `[start, end]` inclusive byte range; the response must then be 206. */
  range?: [number, number];
  signal?: AbortSignal;
}

/** A token bucket: `take(n)` resolves once `n` bytes fit within `rate` bytes per second. */
class Throttle {
  readonly #rate: number;
  #next = 0;

  constructor(rate: number) {
    this.#rate = rate;
  }

  /** Milliseconds the caller must wait before handling `n` more bytes. */
  delay(n: number): number {
    const now = performance.now();
    this.#next = Math.max(this.#next, now) + (n / this.#rate) * 1000;
    // A burst of up to 100 ms of traffic goes through without waiting.
    return Math.max(0, this.#next - now - 100);
  }
}

/**
 * An HTTP(S) client for chunk and bundle downloads.
 * @example
 * const f = new HttpFetcher({ parallel: 4, timeoutMs: 60_000, minRate: 1024, bandwidth: 0 });
 * const frame = await f.get(`${repo}/chunks/ab/cdef.zst`, { maxBytes: 300_000 });
 * f.close();
 */
export class HttpFetcher {
  readonly #limits: FetchLimits;
  readonly #http: http.Agent;
  readonly #https: https.Agent;
  readonly #throttle: Throttle | undefined;
  /** Requests sent, and body bytes received, so far. */
  requests = 0;
  bytes = 0;

  constructor(limits: FetchLimits) {
    this.#limits = limits;
    const opts = { keepAlive: true, maxSockets: limits.parallel, maxFreeSockets: limits.parallel };
    this.#http = new http.Agent(opts);
    this.#https = new https.Agent(opts);
    this.#throttle = limits.bandwidth > 0 ? new Throttle(limits.bandwidth) : undefined;
  }

  /** GETs `url` whole into memory, within the limits; throws FETCH_* codes. */
  get(url: string, opts: GetOptions): Promise<Buffer> {
    const signal = opts.signal ?? this.#limits.signal;
    const o = { ...opts, ...(signal ? { signal } : {}) };
    const u = new URL(url);
    const secure = u.protocol === 'https:';
    if (!secure && u.protocol !== 'http:')
      return Promise.reject(new FerryError('FETCH_FAILED', `not an http(s) URL: ${url}`));
    this.requests++;
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = { 'accept-encoding': 'identity' };
      if (o.range) headers.range = `bytes=${o.range[0]}-${o.range[1]}`;
      const req = (secure ? https : http).get(u, {
        agent: secure ? this.#https : this.#http,
        headers,
      });
      let failure: Error | undefined;
      const fail = (
        code: 'FETCH_FAILED' | 'FETCH_TOO_LARGE' | 'FETCH_TIMEOUT' | 'FETCH_TOO_SLOW',
        msg: string,
      ) => {
        failure ??= new FerryError(code, `${url}: ${msg}`);
        req.destroy(failure);
      };
      const deadline = setTimeout(
        () => fail('FETCH_TIMEOUT', `no complete response within ${this.#limits.timeoutMs} ms`),
        this.#limits.timeoutMs,
      );
      let received = 0;
      let windowStart = performance.now();
      let windowBytes = 0;
      let throttled = false;
      const windowMs = this.#limits.minRateWindowMs ?? 10_000;
      const rateCheck =
        this.#limits.minRate > 0
          ? setInterval(() => {
              const now = performance.now();
              const rate = (windowBytes * 1000) / (now - windowStart);
              // A window in which the bandwidth limit held the response back proves nothing.
              if (!throttled && rate < this.#limits.minRate)
                fail(
                  'FETCH_TOO_SLOW',
                  `${rate.toFixed(0)} B/s is below ${this.#limits.minRate} B/s`,
                );
              windowStart = now;
              windowBytes = 0;
              throttled = false;
            }, windowMs)
          : undefined;
      const done = () => {
        clearTimeout(deadline);
        clearInterval(rateCheck);
        o.signal?.removeEventListener('abort', onAbort);
      };
      const onAbort = () => req.destroy(o.signal?.reason as Error);
      if (o.signal?.aborted) onAbort();
      o.signal?.addEventListener('abort', onAbort);
      req.on('error', (e) => {
        done();
        reject(
          failure ??
            (e instanceof FerryError || o.signal?.aborted
              ? e
              : new FerryError('FETCH_FAILED', `${url}: ${e.message}`, { cause: e })),
        );
      });
      // However the exchange ends, the promise settles: after a resolve this is a no-op, and a
      // connection lost mid-body (which Node may report on the response only) is a failure.
      req.on('close', () => {
        done();
        reject(failure ?? new FerryError('FETCH_FAILED', `${url}: connection closed`));
      });
      req.on('response', (res) => {
        const want = o.range ? 206 : 200;
        if (res.statusCode !== want) {
          res.resume();
          fail('FETCH_FAILED', `HTTP ${res.statusCode}, expected ${want}`);
          return;
        }
        const declared = Number(res.headers['content-length'] ?? NaN);
        if (declared > o.maxBytes) {
          fail('FETCH_TOO_LARGE', `declares ${declared} bytes, at most ${o.maxBytes} expected`);
          return;
        }
        const parts: Buffer[] = [];
        res.on('data', (b: Buffer) => {
          received += b.length;
          windowBytes += b.length;
          this.bytes += b.length;
          if (received > o.maxBytes) {
            fail('FETCH_TOO_LARGE', `sent more than the ${o.maxBytes} bytes expected`);
            return;
          }
          parts.push(b);
          const wait = this.#throttle?.delay(b.length) ?? 0;
          if (wait > 0) {
            throttled = true;
            res.pause();
            setTimeout(() => res.resume(), wait);
          }
        });
        res.on('end', () => {
          done();
          if (res.complete) resolve(Buffer.concat(parts, received));
          else reject(new FerryError('FETCH_FAILED', `${url}: connection closed mid-response`));
        });
        res.on('error', (e) => req.destroy(failure ?? e));
      });
    });
  }

  /** Closes the kept-alive connections. */
  close(): void {
    this.#http.destroy();
    this.#https.destroy();
  }
}
