import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { isFerryError } from '@ferry/core';
import { HttpFetcher, type FetchLimits } from './http-fetch.ts';

const BODY = Buffer.alloc(256 * 1024, 1);
let server: http.Server;
let base: string;
const sockets = new Set<unknown>();

before(async () => {
  server = http.createServer((req, res) => {
    if (req.url === '/file') return void res.end(BODY);
    if (req.url === '/drip') {
      res.writeHead(200, { 'content-length': '100' });
      const t = setInterval(() => res.write('x'), 100);
      res.on('close', () => clearInterval(t));
      return;
    }
    if (req.url === '/cut') {
      res.writeHead(200, { 'content-length': String(BODY.length) });
      res.write(BODY.subarray(0, 1000), () => setTimeout(() => res.socket?.destroy(), 50));
      return;
    }
    if (req.url === '/lying-length') {
      res.writeHead(200, { 'content-length': String(10 * BODY.length) });
      return void res.end(BODY);
    }
    res.writeHead(404).end();
  });
  server.on('connection', (s) => sockets.add(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
after(() => {
  server.closeAllConnections();
  server.close();
});

const limits = (o: Partial<FetchLimits> = {}): FetchLimits => ({
  parallel: 2,
  timeoutMs: 5000,
  minRate: 0,
  bandwidth: 0,
  ...o,
});

describe('HttpFetcher', () => {
  describe('when many files are fetched', () => {
    it('reuses at most `parallel` keep-alive connections', async () => {
      sockets.clear();
      const f = new HttpFetcher(limits({ parallel: 2 }));
      try {
        const got = await Promise.all(
          Array.from({ length: 12 }, () => f.get(`${base}/file`, { maxBytes: BODY.length })),
        );
        assert.ok(got.every((b) => b.equals(BODY)));
        assert.equal(sockets.size, 2);
        assert.equal(f.requests, 12);
        assert.equal(f.bytes, 12 * BODY.length);
      } finally {
        f.close();
      }
    });
  });

  describe('when a response is larger than the cap', () => {
    it('stops reading with FETCH_TOO_LARGE', async () => {
      const f = new HttpFetcher(limits());
      try {
        await assert.rejects(f.get(`${base}/file`, { maxBytes: 1000 }), (e) =>
          isFerryError(e, 'FETCH_TOO_LARGE'),
        );
        await assert.rejects(f.get(`${base}/lying-length`, { maxBytes: 2 * BODY.length }), (e) =>
          isFerryError(e, 'FETCH_TOO_LARGE'),
        );
      } finally {
        f.close();
      }
    });
  });

  describe('when the server drips 10 bytes per second', () => {
    it('gives up with FETCH_TOO_SLOW after one window below the minimum rate', async () => {
      const f = new HttpFetcher(limits({ minRate: 1000, minRateWindowMs: 300 }));
      const t0 = performance.now();
      try {
        await assert.rejects(f.get(`${base}/drip`, { maxBytes: 100 }), (e) =>
          isFerryError(e, 'FETCH_TOO_SLOW'),
        );
        assert.ok(performance.now() - t0 < 2000);
      } finally {
        f.close();
      }
    });
    it('gives up with FETCH_TIMEOUT at the per-request deadline', async () => {
      const f = new HttpFetcher(limits({ timeoutMs: 400 }));
      try {
        await assert.rejects(f.get(`${base}/drip`, { maxBytes: 100 }), (e) =>
          isFerryError(e, 'FETCH_TIMEOUT'),
        );
      } finally {
        f.close();
      }
    });
  });

  describe('when the connection is cut in the middle of the body', () => {
    it('fails with FETCH_FAILED instead of waiting for the deadline', async () => {
      const f = new HttpFetcher(limits({ timeoutMs: 60_000 }));
      const t0 = performance.now();
      try {
        await assert.rejects(f.get(`${base}/cut`, { maxBytes: BODY.length }), (e) =>
          isFerryError(e, 'FETCH_FAILED'),
        );
        assert.ok(performance.now() - t0 < 5000);
      } finally {
        f.close();
      }
    });
  });

  describe('when the server answers 404', () => {
    it('fails with FETCH_FAILED', async () => {
      const f = new HttpFetcher(limits());
      try {
        await assert.rejects(f.get(`${base}/nothing`, { maxBytes: 10 }), (e) =>
          isFerryError(e, 'FETCH_FAILED'),
        );
      } finally {
        f.close();
      }
    });
  });

  describe('when a bandwidth limit is set', () => {
    it('spreads 2 MiB at 4 MiB/s over about half a second', async () => {
      const f = new HttpFetcher(limits({ bandwidth: 4 * 1024 * 1024 }));
      const t0 = performance.now();
      try {
        await Promise.all(
          Array.from({ length: 8 }, () => f.get(`${base}/file`, { maxBytes: BODY.length })),
        );
        const ms = performance.now() - t0;
        // 2 MiB at 4 MiB/s is 500 ms; the first 100 ms of traffic may pass as a burst.
        assert.ok(ms >= 350, `took ${ms.toFixed(0)} ms`);
      } finally {
        f.close();
      }
    });
  });
});
