/**
 * Fleet server benchmark: check-ins/s and p50/p99 latency at several concurrencies, SQLite and
 * PostgreSQL, against the goal of 5,000 check-ins/s with p99 under 50 ms; and a phased rollout
 * to N simulated devices that must end with exactly one final state per device.
 *
 * The server runs in its own process (as in production, `--workers N` for node:cluster). The
 * load generator shares the machine's cores, so it does as little as it can: every check-in is
 * signed before the timed window (a fresh nonce and timestamp each, every one sent once) and
 * serialised to raw HTTP/1.1 bytes, which are written on keep-alive connections. The CPU time
 * of both sides and the load average are reported with every figure.
 *
 *   node bench/server.ts [--devices 2000] [--checkins 20000] [--concurrency 8,32,64]
 *                        [--db sqlite|postgres|both] [--workers N] [--auth session|signature]
 *   node bench/server.ts --rollout-devices 100000 [--db sqlite]
 */
import { spawn } from 'node:child_process';
import cluster from 'node:cluster';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  AdminClient,
  DeviceClient,
  createServer,
  importReleases,
  Director,
  openDatabase,
} from '@ferry/server';
import { DEVICE_CLOCK_SKEW_MS } from '@ferry/protocol';
import { generateKeyPair, parsePrivateKey } from '@ferry/core';
import { have } from '../packages/testing/src/capabilities.ts';
import { startPostgres } from '../packages/testing/src/postgres.ts';
import { rolloutRun } from './server-rollout.ts';

/** The goal of issue 5. */
export const GOAL = { perSecond: 5000, p99Ms: 50 };
export const PASSWORD = 'bench password 1';

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
 * and the release, then forks workers that share the port and one director key; only worker 0
 * runs the rollout evaluation timer.
 */
async function serve(dbUrl: string, workers: number): Promise<void> {
  process.once('SIGTERM', () => {
    for (const w of Object.values(cluster.workers ?? {})) w?.kill();
    process.exit(0);
  });
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
    return;
  }
  const database = await openDatabase(dbUrl);
  const pem = process.env.FERRY_BENCH_DIRECTOR;
  const server = await createServer({
    database,
    ...(pem ? { director: new Director(parsePrivateKey(pem)) } : {}),
    secureCookies: false,
    evaluateIntervalMs: (process.env.FERRY_BENCH_WORKER ?? '0') === '0' ? 2000 : 0,
    bootstrapAdmin: { username: 'admin', password: PASSWORD },
  });
  if (!cluster.isWorker) await importReleases(database.db, [RELEASE], Date.now());
  const url = await server.listen(0);
  if (!cluster.isWorker) process.stdout.write(url + '\n');
}

/** A server process: its URL, CPU seconds so far (with its workers) and a stop. */
export interface ServerProcess {
  url: string;
  cpuSeconds(): number;
  stop(): void;
}

function cpuOf(pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return 0;
  }
}

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const ppid = Number(readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]);
      if (ppid === pid) out.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** Starts `serve` in a child process (FERRY_BENCH_PROF=DIR: with --cpu-prof). */
export function startServer(dbUrl: string, workers = 1): Promise<ServerProcess> {
  const prof = process.env.FERRY_BENCH_PROF;
  const args = [
    ...(prof ? ['--cpu-prof', '--cpu-prof-dir', prof] : []),
    import.meta.filename,
    '--serve',
    dbUrl,
    '--workers',
    String(workers),
  ];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const pid = child.pid!;
  let kids: number[] = [];
  return new Promise((resolve, reject) => {
    child.once('exit', (c) => reject(new Error(`server exited ${c}`)));
    child.stdout.once('data', (b: Buffer) => {
      kids = childrenOf(pid);
      resolve({
        url: b.toString().trim(),
        cpuSeconds: () => cpuOf(pid) + kids.reduce((s, k) => s + cpuOf(k), 0),
        stop: () => child.kill(),
      });
    });
  });
}

/** One HTTP/1.1 keep-alive connection sending pre-serialised requests, one at a time. */
class RawConnection {
  readonly #sock: Socket;
  #buf: Buffer = Buffer.alloc(0);
  #done: ((status: number) => void) | undefined;
  #fail: ((e: Error) => void) | undefined;

  constructor(sock: Socket) {
    this.#sock = sock;
    sock.on('data', (d: Buffer) => this.#onData(d));
    sock.on('error', (e) => this.#fail?.(e));
    sock.on('close', () => this.#fail?.(new Error('connection closed')));
  }

  static open(url: URL): Promise<RawConnection> {
    return new Promise((res, rej) => {
      const s = connect(Number(url.port), url.hostname, () => res(new RawConnection(s)));
      s.setNoDelay(true);
      s.once('error', rej);
    });
  }

  /** Sends `bytes` and resolves with the response status once the whole body has arrived. */
  send(bytes: Buffer): Promise<number> {
    return new Promise((res, rej) => {
      this.#done = res;
      this.#fail = rej;
      this.#sock.write(bytes);
    });
  }

  #onData(d: Buffer): void {
    this.#buf = this.#buf.length ? Buffer.concat([this.#buf, d]) : d;
    const end = this.#buf.indexOf('\r\n\r\n');
    if (end < 0) return;
    const head = this.#buf.subarray(0, end).toString('latin1');
    const len = /\r\ncontent-length: *(\d+)/i.exec(head);
    const complete = len
      ? this.#buf.length >= end + 4 + Number(len[1])
      : this.#buf.subarray(end).includes('\r\n0\r\n\r\n');
    if (!complete) return;
    this.#buf = Buffer.alloc(0);
    const done = this.#done;
    this.#done = this.#fail = undefined;
    done?.(Number(head.slice(9, 12)));
  }

  close(): void {
    this.#sock.destroy();
  }
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

/**
 * `n` check-ins as raw HTTP requests, round-robin over `devices`, each sent once: under each
 * device's session (a MAC), or with `auth` 'signature' signed with its key.
 */
function presign(
  devices: DeviceClient[],
  target: URL,
  n: number,
  from: number,
  auth: Auth,
): Buffer[] {
  const path = target.pathname;
  return Array.from({ length: n }, (_, k) => {
    const i = (from + k) % devices.length;
    const d = devices[i]!;
    const body = Buffer.from(JSON.stringify({ inventory: inv(i) }));
    const h: Record<string, string> =
      auth === 'session'
        ? d.session!.headers('POST', path, body)
        : d.signedHeaders('POST', path, body);
    h['content-length'] = String(body.length);
    h.host = target.host;
    const head = Object.entries(h)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('');
    return Buffer.concat([Buffer.from(`POST ${path} HTTP/1.1\r\n${head}\r\n`), body]);
  });
}

/** How the check-ins are authenticated: a device session's MAC, or an ed25519 signature each. */
export type Auth = 'session' | 'signature';

/** One measured run: figures of one concurrency. */
export interface CheckinFigures {
  db: string;
  auth: Auth;
  workers: number;
  concurrency: number;
  checkins: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  /** CPU cores used over the timed window by the server process(es) and by this generator. */
  serverCores: number;
  generatorCores: number;
  /** 1-minute load average just before the run. */
  load: number;
}

async function timed(
  server: ServerProcess,
  reqs: Buffer[],
  concurrency: number,
): Promise<Omit<CheckinFigures, 'db' | 'auth' | 'workers' | 'concurrency' | 'checkins'>> {
  const target = new URL(server.url);
  const conns = await Promise.all(
    Array.from({ length: concurrency }, () => RawConnection.open(target)),
  );
  const lat = new Float64Array(reqs.length);
  let errors = 0;
  let next = 0;
  const load = loadavg()[0]!;
  const cpu0 = process.cpuUsage();
  const s0 = server.cpuSeconds();
  const t0 = performance.now();
  await Promise.all(
    conns.map(async (c) => {
      for (let i = next++; i < reqs.length; i = next++) {
        const s = performance.now();
        if ((await c.send(reqs[i]!)) !== 200) errors++;
        lat[i] = performance.now() - s;
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  for (const c of conns) c.close();
  lat.sort();
  const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]!;
  return {
    perSecond: reqs.length / secs,
    p50Ms: q(0.5),
    p99Ms: q(0.99),
    errors,
    serverCores: (server.cpuSeconds() - s0) / secs,
    generatorCores: (cpu.user + cpu.system) / 1e6 / secs,
    load,
  };
}

/** Enrols `n` devices with a token, and starts a rollout to 1 % (keeps assignment in the path). */
async function fleet(url: string, n: number): Promise<DeviceClient[]> {
  const admin = new AdminClient(url);
  await admin.login('admin', PASSWORD);
  const { token } = await admin.post<{ token: string }>('/api/v1/enrolment-tokens', { uses: n });
  const devices = Array.from({ length: n }, () => new DeviceClient(url));
  for (let i = 0; i < n; i += 64)
    await Promise.all(devices.slice(i, i + 64).map((d, j) => d.enrol(inv(i + j), token)));
  for (let i = 0; i < n; i += 64)
    await Promise.all(devices.slice(i, i + 64).map((d) => d.openSession()));
  await admin.post('/api/v1/rollouts', {
    name: 'bench',
    release: { compatible: 'bench', version: '2.0.0' },
    channel: 'stable',
    phases: [1, 100],
    successThreshold: 1,
  });
  return devices;
}

/** Options of a check-in benchmark. */
export interface CheckinBenchOptions {
  devices: number;
  checkins: number;
  concurrencies: number[];
  workers: number;
  /** Default 'session'. */
  auth?: Auth;
}

/** Check-in figures at each concurrency on one database (a fresh server and fleet). */
export async function checkinBench(
  db: string,
  dbUrl: string,
  o: CheckinBenchOptions,
): Promise<CheckinFigures[]> {
  const server = await startServer(dbUrl, o.workers);
  try {
    const devices = await fleet(server.url, o.devices);
    const target = new URL(server.url + '/api/v1/device/checkin');
    const out: CheckinFigures[] = [];
    const auth = o.auth ?? 'session';
    let sent = 0;
    // Warm-up: connections, statement caches, key cache, JIT.
    await timed(server, presign(devices, target, Math.min(4000, o.checkins), sent, auth), 16);
    sent += Math.min(4000, o.checkins);
    for (const concurrency of o.concurrencies) {
      const t = performance.now();
      const reqs = presign(devices, target, o.checkins, sent, auth);
      sent += o.checkins;
      if (performance.now() - t > DEVICE_CLOCK_SKEW_MS / 2)
        throw new Error('signing took too long: the requests would leave the clock-skew window');
      await new Promise((r) => setTimeout(r, 1500));
      const f = await timed(server, reqs, concurrency);
      out.push({ db, auth, workers: o.workers, concurrency, checkins: o.checkins, ...f });
    }
    return out;
  } finally {
    server.stop();
  }
}

/** Runs `fn` on a fresh SQLite file and/or a throwaway PostgreSQL database. */
export async function onDatabases<T>(
  which: string,
  fn: (db: string, url: string) => Promise<T>,
): Promise<T[]> {
  const out: T[] = [];
  if (which !== 'postgres') {
    const dir = mkdtempSync(join(tmpdir(), 'ferry-bench-'));
    try {
      out.push(await fn('sqlite', join(dir, 'fleet.db')));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  if (which !== 'sqlite') {
    const pg = await startPostgres();
    try {
      out.push(await fn('postgres', await pg.createDatabase('bench')));
    } finally {
      await pg.stop();
    }
  }
  return out;
}

/**
 * `npm run bench`'s server part: check-ins on SQLite, and on PostgreSQL when Debian's
 * postgresql is installed.
 *
 * @example
 * console.log(formatServerBench(await runServerBench({ checkins: 5000 })));
 */
export async function runServerBench(
  o: Partial<CheckinBenchOptions> & { db?: string } = {},
): Promise<CheckinFigures[]> {
  const opts: CheckinBenchOptions = {
    devices: o.devices ?? 2000,
    checkins: o.checkins ?? 20000,
    concurrencies: o.concurrencies ?? [8, 32, 64],
    workers: o.workers ?? 1,
    auth: o.auth ?? 'session',
  };
  const which = o.db ?? (have('postgres') ? 'both' : 'sqlite');
  const runs = await onDatabases(which, (db, url) => checkinBench(db, url, opts));
  return runs.flat();
}

/** The figures as a table, each against the goal. */
export function formatServerBench(rows: CheckinFigures[]): string {
  const head =
    'db        auth       workers  conc  check-ins/s  of goal   p50 ms   p99 ms  p99<50  errors  server cores  generator cores  load';
  const lines = rows.map((r) =>
    [
      r.db.padEnd(8),
      r.auth.padEnd(10),
      String(r.workers).padStart(7),
      String(r.concurrency).padStart(5),
      r.perSecond.toFixed(0).padStart(12),
      `${((100 * r.perSecond) / GOAL.perSecond).toFixed(0)} %`.padStart(8),
      r.p50Ms.toFixed(1).padStart(8),
      r.p99Ms.toFixed(1).padStart(8),
      (r.p99Ms < GOAL.p99Ms ? 'yes' : 'no').padStart(7),
      String(r.errors).padStart(7),
      r.serverCores.toFixed(2).padStart(13),
      r.generatorCores.toFixed(2).padStart(16),
      r.load.toFixed(2).padStart(5),
    ].join(' '),
  );
  return [
    `goal: ${GOAL.perSecond} check-ins/s with p99 under ${GOAL.p99Ms} ms (2 cores shared with the generator)`,
    head,
    ...lines,
  ].join('\n');
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      serve: { type: 'string' },
      devices: { type: 'string', default: '2000' },
      checkins: { type: 'string', default: '20000' },
      concurrency: { type: 'string', default: '8,32,64' },
      db: { type: 'string' },
      'rollout-devices': { type: 'string' },
      workers: { type: 'string', default: '1' },
      auth: { type: 'string', default: 'session' },
    },
  });
  const workers = Number(values.workers);
  if (values.serve) await serve(values.serve, workers);
  else if (values['rollout-devices']) {
    const n = Number(values['rollout-devices']);
    await onDatabases(values.db ?? 'sqlite', async (db, url) =>
      console.log(await rolloutRun(db, url, await startServer(url, workers), n)),
    );
  } else {
    const rows = await runServerBench({
      devices: Number(values.devices),
      checkins: Number(values.checkins),
      concurrencies: (values.concurrency ?? '').split(',').map(Number),
      workers,
      auth: values.auth === 'signature' ? 'signature' : 'session',
      ...(values.db ? { db: values.db } : {}),
    });
    console.log(formatServerBench(rows));
  }
}
