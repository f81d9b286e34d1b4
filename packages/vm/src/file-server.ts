/**
 * The update host of the VM tests: a node:http server on 127.0.0.1 (the guest reaches it as
 * 10.0.2.2 through QEMU user networking) serving fixed files and texts, with single `Range`
 * requests (Ferry reads bundles over HTTP with range requests).
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** What a path serves: a file on the host, or a literal body. */
export type Route = { file: string } | { body: string };

/** A running server; `requests` lists `METHOD path range` of every request, in order. */
export interface FileServer {
  port: number;
  requests: string[];
  /** Body bytes answered per path (GET requests). */
  bytesSent: Map<string, number>;
  /** The URL the guest uses for `path` (`/v2.fbd` -> `http://10.0.2.2:PORT/v2.fbd`). */
  guestUrl(path: string): string;
  close(): Promise<void>;
}

/**
 * Serves `routes` on 127.0.0.1 at a free port.
 *
 * @example
 * const srv = await startFileServer({ '/v2.fbd': { file: bundle }, '/hello': { body: 'hi' } });
 * await vm.run(`wget -qO- ${srv.guestUrl('/hello')}`);
 * await srv.close();
 */
export async function startFileServer(routes: Record<string, Route>): Promise<FileServer> {
  const requests: string[] = [];
  const bytesSent = new Map<string, number>();
  const server = createServer((req, res) => {
    requests.push(`${req.method} ${req.url} ${req.headers.range ?? ''}`.trim());
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    serve(routes, req, res).then(
      (n) => bytesSent.set(path, (bytesSent.get(path) ?? 0) + n),
      () => res.destroy(),
    );
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    requests,
    bytesSent,
    guestUrl: (path) => `http://10.0.2.2:${port}${path}`,
    close: () =>
      new Promise<void>((ok) => {
        server.closeAllConnections();
        server.close(() => ok());
      }),
  };
}

async function serve(
  routes: Record<string, Route>,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<number> {
  const route = routes[new URL(req.url ?? '/', 'http://x').pathname];
  if (!route || (req.method !== 'GET' && req.method !== 'HEAD')) {
    res.writeHead(404).end();
    return 0;
  }
  if ('body' in route) {
    res.writeHead(200, { 'content-length': Buffer.byteLength(route.body) });
    if (req.method === 'HEAD') {
      res.end();
      return 0;
    }
    res.end(route.body);
    return Buffer.byteLength(route.body);
  }
  const size = (await stat(route.file)).size;
  const range = parseRange(req.headers.range, size);
  if (range === 'bad') {
    res.writeHead(416, { 'content-range': `bytes */${size}` }).end();
    return 0;
  }
  const [start, end] = range ?? [0, size - 1];
  res.writeHead(range ? 206 : 200, {
    'accept-ranges': 'bytes',
    'content-length': end - start + 1,
    ...(range ? { 'content-range': `bytes ${start}-${end}/${size}` } : {}),
  });
  if (req.method === 'HEAD' || size === 0) {
    res.end();
    return 0;
  }
  createReadStream(route.file, { start, end }).pipe(res);
  return end - start + 1;
}

/** One `bytes=a-b`, `bytes=a-` or `bytes=-n` range; undefined without a header. */
export function parseRange(
  header: string | undefined,
  size: number,
): [number, number] | 'bad' | undefined {
  if (header === undefined) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return 'bad';
  let start: number;
  let end: number;
  if (m[1] === '') {
    start = Math.max(0, size - Number(m[2]));
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  return start > end || start >= size ? 'bad' : [start, end];
}
