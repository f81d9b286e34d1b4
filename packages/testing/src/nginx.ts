/**
 * Debian's nginx serving a directory on a loopback port, as a CDN or plain web server would:
 * static files with Range support. Started per test suite, stopped by the returned function.
 */
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

async function waitFor(url: string, ms: number): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      const r = await fetch(url, { method: 'HEAD' });
      await r.body?.cancel();
      return;
    } catch (e) {
      if (Date.now() > end) throw e;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

export interface Nginx {
  url: string;
  /** Lines of the access log: "METHOD URI STATUS BYTES RANGE". */
  accessLog(): Promise<string[]>;
  stop(): Promise<void>;
}

/** Serves `root` (read as root) on 127.0.0.1 until stop(). Needs capability 'nginx'. */
export async function startNginx(root: string): Promise<Nginx> {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-nginx-'));
  const port = await freePort();
  const log = join(dir, 'access.log');
  const conf = `daemon off; master_process off; user root; pid ${dir}/nginx.pid; error_log ${dir}/error.log;
events { worker_connections 64; }
http {
  log_format ferry '$request_method $uri $status $body_bytes_sent $http_range';
  access_log ${log} ferry;
  client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir}; uwsgi_temp_path ${dir}; scgi_temp_path ${dir};
  types { application/octet-stream fbd; }
  server { listen 127.0.0.1:${port}; root ${root}; }
}
`;
  await writeFile(join(dir, 'nginx.conf'), conf);
  const proc = spawn('nginx', ['-c', join(dir, 'nginx.conf'), '-p', dir], { stdio: 'ignore' });
  const url = `http://127.0.0.1:${port}`;
  await waitFor(`${url}/`, 5000);
  return {
    url,
    async accessLog() {
      return (await readFile(log, 'utf8').catch(() => '')).split('\n').filter(Boolean);
    },
    async stop() {
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
