/** `ferry server` and `ferry sim`: the fleet server and simulated devices. Thin wrappers over @ferry/server. */
import cluster from 'node:cluster';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import {
  FerryError,
  generateKeyPair,
  loadPrivateKey,
  parsePrivateKey,
  writeKeyPair,
  type PrivateKey,
} from '@ferry/core';
import type * as ServerLib from '@ferry/server';
import type { LogLevel } from '@ferry/server';
import { flag, str, strs, type CommandContext, type CommandSpec } from './command.ts';

/**
 * The fleet server's code, loaded only by the commands that run it: a device's `ferry` (the
 * agent commands) then never loads the server or its dependencies, which a device image lacks.
 * In a device build (scripts/build-device.ts) it is missing: SERVER_NOT_INSTALLED.
 */
export const serverLib = (): Promise<typeof ServerLib> =>
  import('@ferry/server').catch((e: unknown) => {
    const err = e as { code?: string; message?: string };
    if (err.code === 'ERR_MODULE_NOT_FOUND' && err.message?.includes("'@ferry/server'"))
      throw new FerryError(
        'SERVER_NOT_INSTALLED',
        'this ferry is a device build without the fleet server; run the server from a full install',
        { cause: e },
      );
    throw e;
  });

function int(ctx: CommandContext, name: string, def: number, min = 0): number {
  const v = str(ctx, name);
  if (v === undefined) return def;
  if (!/^\d+$/.test(v) || Number(v) < min)
    throw new FerryError('USAGE', `--${name} must be an integer >= ${min}`);
  return Number(v);
}

function rate(ctx: CommandContext, name: string): number {
  const v = Number(str(ctx, name) ?? '0');
  if (!Number.isFinite(v) || v < 0 || v > 1)
    throw new FerryError('USAGE', `--${name} must be between 0 and 1`);
  return v;
}

/** The keys of --previous-director-key: they sign beside the current key during a rotation. */
async function previousDirectorKeys(ctx: CommandContext): Promise<PrivateKey[]> {
  const paths = strs(ctx, 'previous-director-key');
  if (paths.length > 0 && !str(ctx, 'director-key'))
    throw new FerryError('USAGE', '--previous-director-key needs --director-key');
  if (paths.length > 7) throw new FerryError('USAGE', 'at most 7 previous director keys');
  return Promise.all(paths.map((p) => loadPrivateKey(p)));
}

async function directorKey(
  path: string | undefined,
  previous: PrivateKey[] = [],
): Promise<ServerLib.Director | undefined> {
  if (!path) return undefined;
  // First start: make the key; every later start must find the same one (devices pin it).
  if (!existsSync(path) && path.endsWith('.key')) await writeKeyPair(path.slice(0, -'.key'.length));
  const { Director } = await serverLib();
  return new Director(await loadPrivateKey(path), previous);
}

async function adminPassword(
  ctx: CommandContext,
): Promise<{ password: string; generated: boolean }> {
  const file = str(ctx, 'admin-password-file');
  if (file) return { password: (await readFile(file, 'utf8')).trim(), generated: false };
  if (process.env.FERRY_ADMIN_PASSWORD)
    return { password: process.env.FERRY_ADMIN_PASSWORD, generated: false };
  return { password: randomBytes(12).toString('base64url'), generated: true };
}

/** packages/web/dist beside this package (`npm run build -w packages/web`): the default of --dashboard. */
export const DASHBOARD_DIR = join(import.meta.dirname, '../../web/dist');

function dashboardDir(ctx: CommandContext): string | undefined {
  const dir = str(ctx, 'dashboard');
  if (dir === undefined)
    return existsSync(join(DASHBOARD_DIR, 'index.html')) ? DASHBOARD_DIR : undefined;
  if (!existsSync(join(dir, 'index.html')))
    throw new FerryError(
      'USAGE',
      `--dashboard ${dir} has no index.html (build it: npm run build -w packages/web)`,
    );
  return dir;
}

function untilSignal(): Promise<void> {
  return new Promise((res) => {
    process.once('SIGINT', () => res());
    process.once('SIGTERM', () => res());
  });
}

export const server: CommandSpec = {
  name: 'server',
  summary: 'Run the fleet server (devices, rollouts, director, admin API)',
  description:
    'Serves the device and admin APIs on SQLite (default, a file) or PostgreSQL (--db postgres://...). Imports releases from the signed repository (--repo); never holds repository signing keys. Logs one JSON object per line on stdout. See docs/server.md.',
  options: {
    db: {
      type: 'string',
      placeholder: 'URL',
      description: 'SQLite file or postgres:// URL',
      default: 'ferry.db',
    },
    port: { type: 'string', placeholder: 'PORT', description: 'TCP port', default: '8080' },
    host: {
      type: 'string',
      placeholder: 'ADDR',
      description: 'listen address',
      default: '127.0.0.1',
    },
    repo: {
      type: 'string',
      placeholder: 'DIR|URL',
      description: 'release repository (a directory is also served at /repo/)',
    },
    'trusted-root': {
      type: 'string',
      placeholder: 'FILE',
      description: 'root.json to verify the repository from (default: its 1.root.json)',
    },
    'repository-url': {
      type: 'string',
      placeholder: 'URL',
      description: 'where devices download the repository (a CDN)',
    },
    'director-key': {
      type: 'string',
      placeholder: 'FILE',
      description: 'online ed25519 key that signs assignments (created if missing)',
    },
    'previous-director-key': {
      type: 'string',
      placeholder: 'FILE',
      multiple: true,
      description:
        'a replaced director key that still signs beside --director-key, while devices learn the new one (key rotation)',
    },
    'admin-user': {
      type: 'string',
      placeholder: 'NAME',
      description: 'first admin, created on an empty database',
      default: 'admin',
    },
    'admin-password-file': {
      type: 'string',
      placeholder: 'FILE',
      description: 'first admin password (else $FERRY_ADMIN_PASSWORD, else generated and printed)',
    },
    'insecure-cookies': {
      type: 'boolean',
      description: 'session cookies without Secure (plain HTTP on localhost only)',
    },
    'log-level': {
      type: 'string',
      placeholder: 'LEVEL',
      description: 'debug, info, warn or error',
      default: 'info',
    },
    dashboard: {
      type: 'string',
      placeholder: 'DIR',
      description: 'built dashboard served at /ui/ (default: packages/web/dist when built)',
    },
    workers: {
      type: 'string',
      placeholder: 'N',
      description: 'server processes sharing the port (node:cluster); see docs/server.md',
      default: '1',
    },
    'session-hours': {
      type: 'string',
      placeholder: 'H',
      description:
        'how long a device session lasts (one signed request opens it; later requests carry its MAC)',
      default: '24',
    },
  },
  examples: [
    'ferry server --db ferry.db --repo /srv/ferry --director-key keys/director.key --insecure-cookies',
    'ferry server --dashboard packages/web/dist     # the dashboard at http://127.0.0.1:8080/ui/',
  ],
  async run(ctx) {
    const level = (str(ctx, 'log-level') ?? 'info') as LogLevel;
    if (!['debug', 'info', 'warn', 'error'].includes(level))
      throw new FerryError('USAGE', '--log-level is debug, info, warn or error');
    const workers = int(ctx, 'workers', 1, 1);
    const sessionTtlMs = int(ctx, 'session-hours', 24, 1) * 3600_000;
    if (workers > 1 && cluster.isPrimary) return primary(ctx, workers, level);
    const { createServer, jsonLogger, openDatabase } = await serverLib();
    const logger = jsonLogger(process.stdout, level);
    const repo = str(ctx, 'repo');
    const root = str(ctx, 'trusted-root');
    const { password, generated } = await adminPassword(ctx);
    const dashboard = dashboardDir(ctx);
    const director = cluster.isWorker
      ? await workerDirector()
      : await directorKey(str(ctx, 'director-key'), await previousDirectorKeys(ctx));
    const database = await openDatabase(str(ctx, 'db') ?? 'ferry.db');
    const srv = await createServer({
      database,
      logger,
      // In a cluster only the first worker runs the evaluation timer.
      ...(cluster.isWorker && cluster.worker?.id !== 1 ? { evaluateIntervalMs: 0 } : {}),
      ...(dashboard ? { dashboard: { dir: dashboard } } : {}),
      ...(director ? { director } : {}),
      ...(repo
        ? { repository: { source: repo, ...(root ? { trustedRoot: await readFile(root) } : {}) } }
        : {}),
      ...(str(ctx, 'repository-url') ? { repositoryUrl: str(ctx, 'repository-url')! } : {}),
      secureCookies: !flag(ctx, 'insecure-cookies'),
      sessionTtlMs,
      bootstrapAdmin: { username: str(ctx, 'admin-user') ?? 'admin', password },
    });
    const url = await srv.listen(int(ctx, 'port', 8080), str(ctx, 'host') ?? '127.0.0.1');
    if (cluster.isWorker) {
      await untilSignal();
      await srv.close();
      await database.close();
      cluster.worker?.disconnect();
      return;
    }
    logger.log('info', 'server.started', {
      url,
      dashboard: dashboard ? `${url}/ui/` : null,
      directorKeyId: srv.context.director.publicKey.keyId,
      directorKeyIds: srv.context.director.publicKeys.map((k) => k.keyId),
      ephemeralDirectorKey: !director,
    });
    if (generated)
      logger.log('warn', 'server.admin-password', {
        username: str(ctx, 'admin-user') ?? 'admin',
        password,
        note: 'used only if the database had no users',
      });
    await untilSignal();
    await srv.close();
    await database.close();
    logger.log('info', 'server.stopped', {});
  },
};

/** A worker's director: the primary sends the key over IPC (never in argv or the environment). */
async function workerDirector(): Promise<ServerLib.Director> {
  const { Director } = await serverLib();
  const m = await new Promise<{ directorPem?: string; previousPems?: string[] }>((res) =>
    process.once('message', res),
  );
  return new Director(
    parsePrivateKey(m.directorPem ?? ''),
    (m.previousPems ?? []).map((p) => parsePrivateKey(p)),
  );
}

/**
 * `ferry server --workers N`: the primary migrates the database, creates the first admin and
 * the director key once, then forks N workers that share the port and the one director key.
 * A worker that dies takes the server down (a supervisor restarts it whole).
 */
async function primary(ctx: CommandContext, workers: number, level: LogLevel): Promise<void> {
  const { createServer, jsonLogger, openDatabase } = await serverLib();
  const logger = jsonLogger(process.stdout, level);
  const { password, generated } = await adminPassword(ctx);
  const keyFile = str(ctx, 'director-key');
  const previous = await previousDirectorKeys(ctx);
  const director = await directorKey(keyFile, previous);
  const key = keyFile
    ? await loadPrivateKey(keyFile)
    : parsePrivateKey(generateKeyPair().privateKeyPem);
  const pem = key.key.export({ type: 'pkcs8', format: 'pem' }).toString();
  const database = await openDatabase(str(ctx, 'db') ?? 'ferry.db');
  const setup = await createServer({
    database,
    evaluateIntervalMs: 0,
    ...(director ? { director } : {}),
    bootstrapAdmin: { username: str(ctx, 'admin-user') ?? 'admin', password },
  });
  await setup.close();
  await database.close();
  const started = new Promise<void>((res) => {
    let listening = 0;
    cluster.on('listening', () => ++listening === workers && res());
  });
  const previousPems = previous.map((k) =>
    k.key.export({ type: 'pkcs8', format: 'pem' }).toString(),
  );
  for (let i = 0; i < workers; i++) cluster.fork().send({ directorPem: pem, previousPems });
  let stopping = false;
  cluster.on('exit', (w, code) => {
    if (stopping) return;
    logger.log('error', 'server.worker-exited', { worker: w.id, code });
    process.exitCode = 1;
    stopping = true;
    for (const x of Object.values(cluster.workers ?? {})) x?.kill();
  });
  await started;
  const host = str(ctx, 'host') ?? '127.0.0.1';
  logger.log('info', 'server.started', {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${int(ctx, 'port', 8080)}`,
    workers,
    ephemeralDirectorKey: !keyFile,
  });
  if (generated)
    logger.log('warn', 'server.admin-password', {
      username: str(ctx, 'admin-user') ?? 'admin',
      password,
      note: 'used only if the database had no users',
    });
  await untilSignal();
  stopping = true;
  for (const w of Object.values(cluster.workers ?? {})) w?.kill();
  logger.log('info', 'server.stopped', {});
}

export const sim: CommandSpec = {
  name: 'sim',
  summary: 'Run simulated devices against a fleet server (real protocol and keys)',
  description:
    'Each simulated device enrols with a fresh ed25519 key, checks in, verifies signed assignments and reports download, install and reboot, then commits, fails or rolls back at the given rates.',
  options: {
    server: { type: 'string', placeholder: 'URL', description: 'fleet server base URL' },
    devices: { type: 'string', placeholder: 'N', description: 'number of devices', default: '10' },
    token: {
      type: 'string',
      placeholder: 'TOKEN',
      description: 'enrolment token (without one devices wait for approval)',
    },
    compatible: {
      type: 'string',
      placeholder: 'NAME',
      description: 'compatible string the devices report',
      default: 'sim-device',
    },
    rounds: {
      type: 'string',
      placeholder: 'N',
      description: 'check-in rounds (default: until interrupted)',
    },
    interval: {
      type: 'string',
      placeholder: 'MS',
      description: 'pause between rounds',
      default: '1000',
    },
    'fail-rate': {
      type: 'string',
      placeholder: 'P',
      description: 'share of updates that fail',
      default: '0',
    },
    'rollback-rate': {
      type: 'string',
      placeholder: 'P',
      description: 'share of updates that roll back',
      default: '0',
    },
  },
  json: true,
  examples: [
    'ferry sim --server http://127.0.0.1:8080 --devices 100 --token fet_... --fail-rate 0.05',
  ],
  async run(ctx) {
    const url = str(ctx, 'server');
    if (!url) throw new FerryError('USAGE', '--server is required');
    const ac = new AbortController();
    const stop = () => ac.abort();
    process.once('SIGINT', stop);
    const rounds = str(ctx, 'rounds');
    const token = str(ctx, 'token');
    const { simulate } = await serverLib();
    const stats = await simulate({
      server: url,
      devices: int(ctx, 'devices', 10, 1),
      ...(token ? { token } : {}),
      compatible: str(ctx, 'compatible') ?? 'sim-device',
      ...(rounds ? { rounds: int(ctx, 'rounds', 1, 1) } : {}),
      intervalMs: int(ctx, 'interval', 1000),
      failRate: rate(ctx, 'fail-rate'),
      rollbackRate: rate(ctx, 'rollback-rate'),
      signal: ac.signal,
      onEvent: (e) => ctx.out.line(`${e.deviceId} ${e.state} ${e.version ?? ''}`),
    });
    process.off('SIGINT', stop);
    ctx.out.result(
      stats,
      () =>
        `${stats.enrolled} enrolled, ${stats.checkins} check-ins, ${stats.committed} committed, ${stats.failed} failed, ${stats.rolledBack} rolled back, ${stats.errors} errors`,
    );
  },
};
