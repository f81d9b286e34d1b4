/**
 * Check-in benchmark of the fleet server: check-ins/s and p50/p99 latency, SQLite and
 * PostgreSQL. The server runs in its own process (as in production); this process enrols the
 * devices, pre-signs every request (so client signing does not count), then sends them over
 * keep-alive connections at a fixed concurrency and times each one.
 *
 *   node bench/server.ts [--devices 2000] [--checkins 40000] [--concurrency 64] [--db sqlite|postgres|both]
 *   node bench/server.ts --rollout-devices 100000 [--db ...]   (a phased rollout to simulated devices)
 *   --workers N runs N server processes on the one database (node:cluster, shared port).
 */
import { spawn } from 'node:child_process';
import cluster from 'node:cluster';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Agent, request } from 'node:http';
import {
  AdminClient,
  DeviceClient,
  createServer,
  importReleases,
  Director,
  openDatabase,
  simulate,
} from '@ferry/server';
import { generateKeyPair, parsePrivateKey } from '@ferry/core';
import type { RolloutView } from '@ferry/protocol';
import { startPostgres } from '../packages/testing/src/postgres.ts';

const PASSWORD = 'bench password 1';

const RELEASE = {
  channel: 'stable',
  compatible: 'bench',
  version: '2.0.0',
  releaseCounter: 2,
  manifestPath: 'channels/stable/bench/2.0.0/manifest.json',
  manifestSha256: 'a'.repeat(64),
  manifestLength: 100,
};

/**
 * The server process. With `workers` > 1 the primary migrates the database, creates the admin
 * and the release, then forks workers that share the port (node:cluster) and one director
 * key; only worker 0 runs the rollout evaluation timer.
 */
async function serve(dbUrl: string, workers: number): Promise<void> {
  if (workers > 1 && cluster.isPrimary) {
    const database = await openDatabase(dbUrl);
    const s = await createServer({
      database,
      evaluateIntervalMs: 0,
      bootstrapAdmin: { username: 'admin', password: PASSWORD },
    });
    await importReleases(database.db, [RELEASE], Date.now());
    await s.close();
    await database.close();
    const pem = generateKeyPair().privateKeyPem;
    for (let i = 0; i < workers; i++)
      cluster.fork({ FERRY_BENCH_WORKER: String(i), FERRY_BENCH_DIRECTOR: pem });
    let printed = false;
    cluster.on('listening', (_w, a) => {
      if (!printed) process.stdout.write(`http://127.0.0.1:${a.port}\n`);
      printed = true;
    });
    process.once('SIGTERM', () => {
      for (const w of Object.values(cluster.workers ?? {})) w?.kill();
      process.exit(0);
    });
    return;
  }
  const database = await openDatabase(dbUrl);
  const pem = process.env.FERRY_BENCH_DIRECTOR;
  const server = await createServer({
    database,
    ...(pem ? { director: new Director(parsePrivateKey(pem)) } : {}),
    secureCookies: false,
    evaluateIntervalMs: (process.env.FERRY_BENCH_WORKER ?? '0') === '0' ? 5000 : 0,
    bootstrapAdmin: { username: 'admin', password: PASSWORD },
  });
  if (!cluster.isWorker) await importReleases(database.db, [RELEASE], Date.now());
  const url = await server.listen(0);
  if (!cluster.isWorker) process.stdout.write(url + '\n');
}

function startServer(dbUrl: string): Promise<{ url: string; stop: () => void }> {
  const args = [import.meta.filename, '--serve', dbUrl, '--workers', String(WORKERS)];
  const child = spawn(process.execPath, args, {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    child.once('exit', (c) => reject(new Error(`server exited ${c}`)));
    child.stdout.once('data', (b: Buffer) =>
      resolve({ url: b.toString().trim(), stop: () => child.kill() }),
    );
  });
}

const inv = (i: number) => ({
  compatible: 'bench',
  hardwareId: `hw-${i}`,
  agentVersion: '1',
  bootedSlot: 'a',
  releaseCounter: 1,
  slots: [{ name: 'a', version: '1.0.0', releaseCounter: 1, health: 'good' as const }],
  attributes: { site: 's' + (i % 10) },
});

async function run(
  label: string,
  dbUrl: string,
  o: { devices: number; checkins: number; concurrency: number },
) {
  const { url, stop } = await startServer(dbUrl);
  try {
    const admin = new AdminClient(url);
    await admin.login('admin', PASSWORD);
    const { token } = await admin.post<{ token: string }>('/api/v1/enrolment-tokens', {
      uses: o.devices,
    });
    const devices = Array.from({ length: o.devices }, () => new DeviceClient(url));
    for (let i = 0; i < devices.length; i += 50)
      await Promise.all(devices.slice(i, i + 50).map((d, j) => d.enrol(inv(i + j), token)));
    // A rollout to 1 % keeps the assignment path in the measurement.
    await admin.post('/api/v1/rollouts', {
      name: 'bench',
      release: { compatible: 'bench', version: '2.0.0' },
      channel: 'stable',
      phases: [1, 100],
      successThreshold: 1,
    });
    const path = '/api/v1/device/checkin';
    // Requests are signed in batches outside the timed part; a batch is sent well within the
    // 5-minute timestamp window the server enforces.
    const BATCH = 2000;
    const sign = (from: number, n: number) =>
      Array.from({ length: n }, (_, k) => {
        const i = from + k;
        const d = devices[i % devices.length]!;
        const body = Buffer.from(JSON.stringify({ inventory: inv(i % devices.length) }));
        return { body, headers: d.signedHeaders('POST', path, body) };
      });
    const agent = new Agent({ keepAlive: true, maxSockets: o.concurrency });
    const target = new URL(url + path);
    const post = (r: ReturnType<typeof sign>[number]) =>
      new Promise<number>((resolve, reject) => {
        const req = request(
          target,
          {
            method: 'POST',
            headers: { ...r.headers, 'content-length': String(r.body.length) },
            agent,
          },
          (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          },
        );
        req.on('error', reject);
        req.end(r.body);
      });
    const lat: number[] = [];
    const statuses = new Map<number, number>();
    let errors = 0;
    let timed = 0;
    for (let from = 0; from < o.checkins; from += BATCH) {
      const reqs = sign(from, Math.min(BATCH, o.checkins - from));
      let next = 0;
      const t1 = performance.now();
      await Promise.all(
        Array.from({ length: o.concurrency }, async () => {
          for (let i = next++; i < reqs.length; i = next++) {
            const s = performance.now();
            const status = await post(reqs[i]!);
            lat.push(performance.now() - s);
            if (status !== 200) {
              errors++;
              statuses.set(status, (statuses.get(status) ?? 0) + 1);
            }
          }
        }),
      );
      timed += performance.now() - t1;
    }
    const t0 = performance.now() - timed;
    const secs = (performance.now() - t0) / 1000;
    lat.sort((a, b) => a - b);
    const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]!.toFixed(1);
    console.log(
      `${label}: ${o.checkins} check-ins from ${o.devices} devices, concurrency ${o.concurrency}: ${(o.checkins / secs).toFixed(0)}/s, p50 ${q(0.5)} ms, p99 ${q(0.99)} ms, errors ${errors}${errors ? ` ${JSON.stringify([...statuses])}` : ''}`,
    );
    agent.destroy();
  } finally {
    stop();
  }
}

/**
 * A phased rollout (1 % -> 10 % -> 50 % -> 100 %) to N simulated devices, run until it
 * completes; checks that every device ended with exactly one final state.
 */
async function rolloutRun(label: string, dbUrl: string, devices: number) {
  const { url, stop } = await startServer(dbUrl);
  try {
    const admin = new AdminClient(url);
    await admin.login('admin', PASSWORD);
    const { token } = await admin.post<{ token: string }>('/api/v1/enrolment-tokens', {
      uses: devices,
    });
    const ro = await admin.post<RolloutView>('/api/v1/rollouts', {
      name: 'bench',
      release: { compatible: 'bench', version: '2.0.0' },
      channel: 'stable',
      phases: [1, 10, 50, 100],
      successThreshold: 0.9,
      failureThreshold: 0.2,
      minReports: 20,
    });
    const t0 = performance.now();
    const ac = new AbortController();
    const watch = (async () => {
      for (;;) {
        await new Promise((r) => setTimeout(r, 1000));
        const v = await admin.get<RolloutView>(`/api/v1/rollouts/${ro.id}`);
        if (v.state !== 'running' || ac.signal.aborted) return v;
      }
    })();
    const sim = simulate({
      server: url,
      devices,
      token,
      compatible: 'bench',
      intervalMs: 200,
      failRate: 0.01,
      rollbackRate: 0.01,
      concurrency: 32,
      signal: ac.signal,
    });
    const final = await watch;
    ac.abort();
    const s = await sim;
    const v = await admin.get<RolloutView>(`/api/v1/rollouts/${ro.id}`);
    const finals = v.counts.committed + v.counts.failed + v.counts['rolled-back'];
    const ok =
      v.counts.committed === s.committed &&
      v.counts.failed === s.failed &&
      v.counts['rolled-back'] === s.rolledBack;
    console.log(
      `${label}: rollout to ${devices} devices ${final.state} in ${((performance.now() - t0) / 1000).toFixed(0)} s; ${finals} final states (${v.counts.committed} committed, ${v.counts.failed} failed, ${v.counts['rolled-back']} rolled back); server and devices agree: ${ok}; ${s.checkins} check-ins, ${s.errors} errors`,
    );
  } finally {
    stop();
  }
}

const { values } = parseArgs({
  options: {
    serve: { type: 'string' },
    devices: { type: 'string', default: '2000' },
    checkins: { type: 'string', default: '40000' },
    concurrency: { type: 'string', default: '64' },
    db: { type: 'string', default: 'both' },
    'rollout-devices': { type: 'string' },
    workers: { type: 'string', default: '1' },
  },
});
const WORKERS = Number(values.workers);
if (values.serve) await serve(values.serve, WORKERS);
else {
  const o = {
    devices: Number(values.devices),
    checkins: Number(values.checkins),
    concurrency: Number(values.concurrency),
  };
  const rolloutDevices = Number(values['rollout-devices'] ?? 0);
  const bench = (label: string, url: string) =>
    rolloutDevices ? rolloutRun(label, url, rolloutDevices) : run(label, url, o);
  if (values.db !== 'postgres') {
    const dir = mkdtempSync(join(tmpdir(), 'ferry-bench-'));
    await bench('sqlite', join(dir, 'fleet.db'));
    rmSync(dir, { recursive: true, force: true });
  }
  if (values.db !== 'sqlite') {
    const pg = await startPostgres();
    try {
      await bench('postgres', await pg.createDatabase('bench'));
    } finally {
      await pg.stop();
    }
  }
}
