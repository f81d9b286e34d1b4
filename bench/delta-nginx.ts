/**
 * A throwaway Debian nginx serving one directory on a loopback port, as a CDN would (byte ranges,
 * multipart ranges): zckdl needs a real HTTP server.
 */
import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      s.close(() => resolve(typeof addr === 'object' && addr ? addr.port : 0));
    });
  });
}

async function waitPort(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const ok = await fetch(`http://127.0.0.1:${port}/`).then(
      () => true,
      () => false,
    );
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('nginx did not start');
}

/** Serves `root` with nginx while `fn` runs; stops it (only the process it started) afterwards. */
export async function withNginx<T>(root: string, fn: (url: string) => Promise<T>): Promise<T> {
  const prefix = `${root}.nginx`;
  await mkdir(join(prefix, 'tmp'), { recursive: true });
  const port = await freePort();
  const conf = join(prefix, 'nginx.conf');
  await writeFile(
    conf,
    `daemon off; master_process off; user root root; worker_processes 1;
pid ${prefix}/nginx.pid; error_log ${prefix}/error.log;
events { worker_connections 64; }
http { access_log off; client_body_temp_path ${prefix}/tmp; proxy_temp_path ${prefix}/tmp;
  fastcgi_temp_path ${prefix}/tmp; uwsgi_temp_path ${prefix}/tmp; scgi_temp_path ${prefix}/tmp;
  server { listen 127.0.0.1:${port}; root ${root}; max_ranges 1024; } }
`,
  );
  const child = spawn('nginx', ['-p', prefix, '-c', conf], { stdio: 'ignore' });
  try {
    await waitPort(port);
    return await fn(`http://127.0.0.1:${port}`);
  } finally {
    child.kill('SIGTERM');
  }
}
