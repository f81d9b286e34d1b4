/**
 * `ferry demo fleet`: the README's main job for the fleet. Makes (or reuses) a signed static
 * repository with two releases in `stable`, starts the fleet server on a fresh SQLite file with
 * the dashboard at /ui/, runs simulated devices (a tagged subset of them flaky) and rolls the
 * newer release out to them in phases, so that whoever opens the printed URL sees it move.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { createServer as netServer } from 'node:net';
import { join, resolve } from 'node:path';
import { buildImage } from '@ferry/builder';
import {
  createBundle,
  FerryError,
  loadKeyring,
  loadPrivateKey,
  writeKeyPair,
  type PrivateKey,
} from '@ferry/core';
import type { RolloutView } from '@ferry/protocol';
import { initRepo, publishBundle, refresh, REPO_CONFIG_FILE } from '@ferry/repo';
import type { AdminClient, SimStats } from '@ferry/server';
import { DASHBOARD_DIR, serverLib } from './server-commands.ts';
import { str, type CommandContext, type CommandSpec, type OptionSpec } from './command.ts';

const COMPATIBLE = 'ferry-demo';
const CHANNEL = 'stable';
const RELEASES = [
  { version: '1.0.0', counter: 1 },
  { version: '1.1.0', counter: 2 },
] as const;
const ROLLOUT = `${COMPATIBLE} 1.1.0 to ${CHANNEL}`;

type Say = (s: string) => void;

/** Deterministic filler so the demo tree has realistic, compressible files (as `ferry demo`). */
function text(seed: string, lines: number): string {
  const out: string[] = [];
  let h = createHash('sha256').update(seed).digest('hex');
  for (let i = 0; i < lines; i++) {
    h = createHash('sha256').update(h).digest('hex');
    out.push(`${i.toString().padStart(6, '0')} ${h} ${seed}`);
  }
  return `${out.join('\n')}\n`;
}

async function makeRootfs(dir: string, version: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  for (const d of ['etc', 'usr/bin', 'usr/lib/demo', 'var', 'data'])
    await mkdir(join(dir, d), { recursive: true });
  await writeFile(join(dir, 'etc/os-release'), `NAME="Ferry Demo OS"\nVERSION_ID=${version}\n`);
  await writeFile(join(dir, 'usr/bin/hello'), `#!/bin/sh\necho "hello from ${version}"\n`, {
    mode: 0o755,
  });
  for (let i = 0; i < 8; i++)
    await writeFile(join(dir, `usr/lib/demo/lib${i}.so`), text(`lib${i}`, 1000));
  if (version !== '1.0.0')
    await writeFile(join(dir, 'usr/lib/demo/lib7.so'), text(`lib7-${version}`, 1000));
}

async function keyFor(dir: string, name: string): Promise<PrivateKey> {
  const prefix = join(dir, 'keys', name);
  await mkdir(join(dir, 'keys'), { recursive: true });
  if (!existsSync(`${prefix}.key`)) await writeKeyPair(prefix);
  return loadPrivateKey(`${prefix}.key`);
}

/** True if the repository verifies and holds both demo releases in the channel. */
async function complete(repo: string): Promise<boolean> {
  const { readRepositoryReleases } = await serverLib();
  const found = await readRepositoryReleases(repo).catch(() => []);
  return RELEASES.every((r) => found.some((f) => f.channel === CHANNEL && f.version === r.version));
}

async function buildRepository(dir: string, repo: string, say: Say): Promise<void> {
  const release = await keyFor(dir, 'release');
  const [root, targets, snapshot, timestamp] = await Promise.all(
    ['root', 'targets', 'snapshot', 'timestamp'].map((n) => keyFor(dir, n)),
  );
  await rm(repo, { recursive: true, force: true });
  await initRepo(repo, {
    keys: { root: [root!], targets: [targets!], snapshot: snapshot!, timestamp: timestamp! },
  });
  const keyring = await loadKeyring(join(dir, 'keys', 'release.pub'));
  for (const r of RELEASES) {
    const tree = join(dir, 'build', `rootfs-${r.version}`);
    await makeRootfs(tree, r.version);
    const img = await buildImage({
      from: tree,
      format: 'squashfs',
      out: join(dir, 'build', `rootfs-${r.version}.sqfs`),
      sourceDateEpoch: 1700000000,
    });
    const b = await createBundle({
      images: [{ name: 'rootfs', path: img.path }],
      compatible: COMPATIBLE,
      version: r.version,
      releaseCounter: r.counter,
      keys: [release],
      out: join(dir, 'build', `${COMPATIBLE}-${r.version}.fbd`),
      created: '2026-01-01T00:00:00Z',
    });
    const p = await publishBundle(repo, b.path, {
      channel: CHANNEL,
      keyring,
      keys: { targets: [targets!], snapshot: snapshot!, timestamp: timestamp! },
    });
    say(`   published ${COMPATIBLE} ${r.version} to ${CHANNEL} (${p.chunks.added} new chunks)`);
  }
}

/**
 * Makes the demo's signed repository in `dir/repo` (keys in `dir/keys`), or reuses it after
 * re-signing snapshot and timestamp (what a cron job does: the timestamp expires in a day).
 */
export async function prepareRepository(dir: string, say: Say): Promise<string> {
  const repo = join(dir, 'repo');
  if (existsSync(join(repo, REPO_CONFIG_FILE))) {
    const [snapshotKey, timestampKey] = await Promise.all([
      keyFor(dir, 'snapshot'),
      keyFor(dir, 'timestamp'),
    ]);
    const refreshed = refresh(repo, { snapshotKey, timestampKey }).then(
      () => complete(repo),
      () => false,
    );
    if (await refreshed) return repo;
  }
  say(`building the demo repository in ${repo} (first run only)`);
  await buildRepository(dir, repo, say);
  return repo;
}

/** The built dashboard directory; builds it with Vite when missing; undefined if that fails. */
export async function ensureDashboard(warn: Say): Promise<string | undefined> {
  if (existsSync(join(DASHBOARD_DIR, 'index.html'))) return DASHBOARD_DIR;
  const web = join(DASHBOARD_DIR, '..');
  try {
    const vite = await import('vite');
    await vite.build({ root: web, configFile: join(web, 'vite.config.mjs'), logLevel: 'warn' });
    return DASHBOARD_DIR;
  } catch (e) {
    warn(`the dashboard is not built (${(e as Error).message}): run npm run build -w packages/web`);
    return undefined;
  }
}

/** Refuses a busy port with one clear line instead of a crash inside the HTTP server. */
async function checkPort(port: number, host: string): Promise<void> {
  if (port === 0) return;
  await new Promise<void>((res, rej) => {
    const s = netServer();
    s.once('error', (e: Error) =>
      rej(new FerryError('IO', `${host}:${port} is not free (${e.message}): try --port 0`)),
    );
    s.listen(port, host, () => s.close(() => res()));
  });
}

/** The demo's settings, from the command line. */
interface DemoOptions {
  dir: string;
  port: number;
  host: string;
  devices: number;
  flaky: number;
  failRate: number;
  rollbackRate: number;
  intervalMs: number;
  durationS: number | undefined;
}

function num(ctx: CommandContext, name: string, def: number, min: number, max: number): number {
  const v = str(ctx, name);
  const n = v === undefined ? def : Number(v);
  if (!Number.isFinite(n) || n < min || n > max || (v !== undefined && v.trim() === ''))
    throw new FerryError('USAGE', `--${name} must be a number from ${min} to ${max}`);
  return n;
}

function options(ctx: CommandContext): DemoOptions {
  const int = (name: string, def: number, min: number, max: number) => {
    const n = num(ctx, name, def, min, max);
    if (!Number.isInteger(n)) throw new FerryError('USAGE', `--${name} must be an integer`);
    return n;
  };
  const devices = int('devices', 25, 1, 10000);
  return {
    dir: resolve(str(ctx, 'dir') ?? '.cache/fleet-demo'),
    port: int('port', 8080, 0, 65535),
    host: str(ctx, 'host') ?? '127.0.0.1',
    devices,
    flaky: Math.round(devices * num(ctx, 'flaky', 0.2, 0, 1)),
    failRate: num(ctx, 'fail-rate', 0.3, 0, 1),
    rollbackRate: num(ctx, 'rollback-rate', 0.1, 0, 1),
    intervalMs: int('interval', 5000, 100, 600000),
    durationS: str(ctx, 'duration') === undefined ? undefined : int('duration', 0, 1, 1e7),
  };
}

/** A running server with its database, admin session and simulated devices. */
interface Fleet {
  url: string;
  admin: AdminClient;
  password: string;
  sims: Array<Promise<SimStats>>;
  abort: AbortController;
  stop(): Promise<void>;
}

async function startFleet(o: DemoOptions, repo: string, dashboard: string | undefined) {
  const file = join(o.dir, 'fleet.db');
  // A fresh database per start: the printed password is always the one that works.
  for (const f of [file, `${file}-wal`, `${file}-shm`]) await rm(f, { force: true });
  const { AdminClient, Director, createServer, jsonLogger, openDatabase } = await serverLib();
  const database = await openDatabase(file);
  const password = randomBytes(12).toString('base64url');
  const srv = await createServer({
    database,
    logger: jsonLogger(process.stderr, 'error'),
    director: new Director(await keyFor(o.dir, 'director')),
    repository: { source: repo },
    ...(dashboard ? { dashboard: { dir: dashboard } } : {}),
    // Plain HTTP on this machine: a Secure cookie would never come back.
    secureCookies: false,
    evaluateIntervalMs: 1000,
    bootstrapAdmin: { username: 'admin', password },
  });
  const url = await srv.listen(o.port, o.host);
  const admin = new AdminClient(url);
  await admin.login('admin', password).catch(async (e: unknown) => {
    await srv.close();
    await database.close();
    throw e;
  });
  const abort = new AbortController();
  const fleet: Fleet = {
    url,
    admin,
    password,
    sims: [],
    abort,
    async stop() {
      abort.abort();
      await Promise.allSettled(fleet.sims);
      await srv.close();
      await database.close();
    },
  };
  return fleet;
}

/** Enrols the devices with two tokens (tags healthy and flaky) and starts their check-ins. */
async function startDevices(f: Fleet, o: DemoOptions): Promise<void> {
  const groups = [
    { tag: 'healthy', n: o.devices - o.flaky, failRate: 0, rollbackRate: 0 },
    { tag: 'flaky', n: o.flaky, failRate: o.failRate, rollbackRate: o.rollbackRate },
  ];
  const { simulate } = await serverLib();
  for (const g of groups) {
    if (g.n === 0) continue;
    const { token } = await f.admin.post<{ token: string }>('/api/v1/enrolment-tokens', {
      uses: g.n,
      channel: CHANNEL,
      tags: [g.tag],
    });
    f.sims.push(
      simulate({
        server: f.url,
        devices: g.n,
        token,
        compatible: COMPATIBLE,
        intervalMs: o.intervalMs,
        failRate: g.failRate,
        rollbackRate: g.rollbackRate,
        signal: f.abort.signal,
      }),
    );
  }
}

const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));

async function waitFor<T>(
  f: Fleet,
  what: string,
  ms: number,
  probe: () => Promise<T | undefined>,
): Promise<T> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(250)) {
    if (f.abort.signal.aborted) throw new FerryError('INTERNAL', `stopped waiting for ${what}`);
    const v = await probe();
    if (v !== undefined) return v;
  }
  throw new FerryError('INTERNAL', `the fleet demo timed out waiting for ${what}`);
}

const finals = (v: RolloutView) => v.counts.committed + v.counts.failed + v.counts['rolled-back'];

/**
 * The scenario: import the releases, enrol the devices, install 1.0.0 on all of them (the
 * simulator starts devices empty), then roll 1.1.0 out in phases 10 % → 25 % → 50 % → 100 %.
 */
async function runScenario(f: Fleet, o: DemoOptions, say: Say): Promise<void> {
  await f.admin.post('/api/v1/releases/import');
  await startDevices(f, o);
  await waitFor(f, 'the devices to enrol', 30_000, async () => {
    const ov = await f.admin.get<{ devices: { total: number } }>('/api/v1/overview');
    return ov.devices.total >= o.devices ? true : undefined;
  });
  say(`${o.devices} devices enrolled (${o.flaky} tagged flaky); installing 1.0.0 on them first`);
  const base = await f.admin.post<RolloutView>('/api/v1/rollouts', {
    name: `${COMPATIBLE} 1.0.0 (factory install)`,
    release: { compatible: COMPATIBLE, version: '1.0.0' },
    channel: CHANNEL,
    phases: [100],
    successThreshold: 0.5,
    failureThreshold: 1,
  });
  const done = await waitFor(f, 'the factory install', 10 * o.intervalMs, async () => {
    const v = await f.admin.get<RolloutView>(`/api/v1/rollouts/${base.id}`);
    return v.state !== 'running' || finals(v) >= v.targeted ? v : undefined;
  });
  if (done.state === 'running') await f.admin.post(`/api/v1/rollouts/${base.id}/cancel`);
  await f.admin.post('/api/v1/rollouts', {
    name: ROLLOUT,
    release: { compatible: COMPATIBLE, version: '1.1.0' },
    channel: CHANNEL,
    phases: [10, 25, 50, 100],
    // Below 1 - the flaky share's likely failures, or a phase would never open.
    successThreshold: 0.7,
    failureThreshold: 0.3,
    minReports: 5,
  });
  say(
    `rollout "${ROLLOUT}" started: phases 10 % → 25 % → 50 % → 100 %, pauses above 30 % failures`,
  );
}

function describeRollout(v: RolloutView): string {
  const c = v.counts;
  const inFlight = c.assigned + c.downloading + c.installing + c.rebooting;
  const why = v.pauseReason ? ` (${v.pauseReason}; resume it on the Rollouts page)` : '';
  return `${v.state}${why}, phase ${v.phase + 1} of ${v.phases.length} (${v.phases[v.phase]} %): ${c.committed} committed, ${inFlight} in flight, ${c.failed} failed, ${c['rolled-back']} rolled back of ${v.targeted}`;
}

/** Prints the rollout's progress whenever it changes; returns the stop function. */
function watchRollout(f: Fleet, say: Say): () => void {
  const t0 = Date.now();
  let last = '';
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    f.admin
      .get<RolloutView[]>('/api/v1/rollouts')
      .then((list) => {
        const v = list.find((r) => r.name === ROLLOUT);
        const line = v ? describeRollout(v) : '';
        if (line && line !== last)
          say(`[${Math.round((Date.now() - t0) / 1000)}s] ${(last = line)}`);
      })
      .catch(() => undefined)
      .finally(() => (busy = false));
  }, 1000);
  return () => clearInterval(timer);
}

/** Resolves on SIGINT, SIGTERM or after `seconds`. */
function stopSignal(seconds: number | undefined): { wait: Promise<void>; dispose(): void } {
  let done!: () => void;
  const wait = new Promise<void>((res) => (done = res));
  const t = seconds === undefined ? undefined : setTimeout(done, seconds * 1000);
  process.once('SIGINT', done);
  process.once('SIGTERM', done);
  return {
    wait,
    dispose() {
      clearTimeout(t);
      process.off('SIGINT', done);
      process.off('SIGTERM', done);
    },
  };
}

function banner(f: Fleet, ui: string | null, o: DemoOptions): string {
  return [
    '',
    'Ferry fleet demo is running',
    `  dashboard  ${ui ?? `(not built: npm run build -w packages/web) API at ${f.url}/api/v1`}`,
    '  user       admin',
    `  password   ${f.password}   (new on every start)`,
    '',
    `${o.devices} simulated devices check in every ${o.intervalMs / 1000} s; open Rollouts to watch "${ROLLOUT}".`,
    o.durationS === undefined ? 'Stop with Ctrl-C.' : `Stops after ${o.durationS} s.`,
    '',
  ].join('\n');
}

/** Runs the scenario until a signal or the duration; stops devices, server and database. */
async function serveDemo(ctx: CommandContext, o: DemoOptions, f: Fleet, dashboard?: string) {
  const say = (s: string) => ctx.out.line(s);
  const stop = stopSignal(o.durationS);
  const unwatch = watchRollout(f, say);
  try {
    const ui = dashboard ? `${f.url}/ui/` : null;
    const doc = {
      url: f.url,
      dashboard: ui,
      username: 'admin',
      password: f.password,
      dir: o.dir,
      repository: join(o.dir, 'repo'),
      database: join(o.dir, 'fleet.db'),
      devices: o.devices,
      flaky: o.flaky,
      rollout: ROLLOUT,
    };
    ctx.out.result(doc, () => banner(f, ui, o));
    let failed: { error: unknown } | undefined;
    const scenario = runScenario(f, o, say).then(
      () => stop.wait,
      (error: unknown) => void (failed = { error }),
    );
    await Promise.race([stop.wait, scenario]);
    if (failed) throw failed.error;
  } finally {
    stop.dispose();
    unwatch();
    await f.stop();
  }
  const stats = (await Promise.all(f.sims)).reduce(
    (a, s) => ({
      checkins: a.checkins + s.checkins,
      committed: a.committed + s.committed,
      failed: a.failed + s.failed + s.rolledBack,
    }),
    { checkins: 0, committed: 0, failed: 0 },
  );
  say(
    `stopped: ${stats.checkins} check-ins, ${stats.committed} updates committed, ${stats.failed} failed or rolled back`,
  );
}

function opt(placeholder: string, description: string, def?: string): OptionSpec {
  return {
    type: 'string',
    placeholder,
    description,
    ...(def === undefined ? {} : { default: def }),
  };
}

/**
 * `ferry demo fleet`: what `npm start` runs.
 *
 * @example
 * // ferry demo fleet --port 0 --duration 40 --json
 * await demoFleet.run({ values: { port: '0', duration: '40' }, positionals: [], out });
 */
export const demoFleet: CommandSpec = {
  name: 'demo fleet',
  summary: 'Run the fleet server with a dashboard, simulated devices and a live phased rollout',
  description:
    'Makes (or reuses) a signed repository with two releases in channel stable in --dir, starts the fleet server on a fresh SQLite database there with the dashboard at /ui/, enrols --devices simulated devices (real keys, real protocol; a --flaky share of them fail or roll back at the given rates), installs 1.0.0 on them, then rolls 1.1.0 out in phases 10 % → 25 % → 50 % → 100 %, pausing by itself above 30 % failures. Prints the dashboard URL and a generated admin password first, then the rollout progress, and runs until Ctrl-C (or --duration). See docs/server.md.',
  options: {
    dir: opt('DIR', 'working directory', '.cache/fleet-demo'),
    port: opt('PORT', 'TCP port (0: any free one)', '8080'),
    host: opt('ADDR', 'listen address', '127.0.0.1'),
    devices: opt('N', 'simulated devices', '25'),
    flaky: opt('SHARE', 'share of devices tagged flaky', '0.2'),
    'fail-rate': opt('P', "share of a flaky device's updates that fail", '0.3'),
    'rollback-rate': opt('P', "share of a flaky device's updates that roll back", '0.1'),
    interval: opt('MS', "pause between a device's check-ins", '5000'),
    duration: opt('SECONDS', 'stop by itself after this long (default: at Ctrl-C)'),
  },
  json: true,
  examples: [
    'ferry demo fleet                                   # then open http://127.0.0.1:8080/ui/',
    'ferry demo fleet --port 0 --devices 200 --interval 1000',
    'ferry demo fleet --fail-rate 1                     # watch the rollout pause by itself',
    'ferry demo fleet --port 0 --duration 40 --json     # one JSON document (URL, password), then stop',
  ],
  async run(ctx) {
    const o = options(ctx);
    const warn = (s: string) => void process.stderr.write(`ferry: warning: ${s}\n`);
    await mkdir(o.dir, { recursive: true });
    await checkPort(o.port, o.host);
    const repo = await prepareRepository(o.dir, (s) => ctx.out.line(s));
    const dashboard = await ensureDashboard(warn);
    await serveDemo(ctx, o, await startFleet(o, repo, dashboard), dashboard);
  },
};
