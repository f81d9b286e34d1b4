/**
 * The VM tests' artefact cache: `<repo>/.cache/vm` (not in git), one directory per artefact and
 * beside it a stamp holding the SHA-256 of its recipe (scripts, guest files, Ferry's sources,
 * the stamps of its inputs). A matching stamp skips the step; anything else is rebuilt under a
 * temporary name and renamed into place, so an interrupted build is never mistaken for a
 * finished one. A lock directory keeps concurrent test files from building the same thing.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export const REPO = join(import.meta.dirname, '..', '..', '..');
/** The cache directory: FERRY_VM_CACHE, else `<repo>/.cache/vm`. */
export function cacheDir(): string {
  return process.env.FERRY_VM_CACHE ?? join(REPO, '.cache', 'vm');
}

/** SHA-256 of length-prefixed parts. */
export function sha256(...parts: Array<string | Buffer>): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(typeof p === 'string' ? `${p.length}:${p}` : p);
  return h.digest('hex');
}

/** SHA-256 over the names and contents of `paths`. */
export function hashFiles(paths: string[]): string {
  return sha256(...paths.flatMap((p) => [p, readFileSync(p)]));
}

/** Ferry's runtime as it goes into the root image: non-test sources and package manifests. */
export function ferrySourcesHash(): string {
  const files = ['package.json', 'package-lock.json', 'scripts/build-device.ts'].map((f) =>
    join(REPO, f),
  );
  for (const p of ['core', 'protocol', 'builder', 'repo', 'agent', 'cli']) {
    const src = join(REPO, 'packages', p, 'src');
    files.push(join(REPO, 'packages', p, 'package.json'));
    for (const f of readdirSync(src).sort())
      if (f.endsWith('.ts') && !f.endsWith('.test.ts')) files.push(join(src, f));
  }
  const node = statSync(join(REPO, 'node_modules', '.bin', 'node'));
  return sha256(hashFiles(files), `${node.size}:${node.mtimeMs}`);
}

/** Runs a command, its output appended to `log`; rejects with the log's tail on failure. */
export function exec(cmd: string, args: string[], log: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const env = {
      ...process.env,
      PATH: `${join(REPO, 'node_modules', '.bin')}:${process.env.PATH}`,
    };
    const p = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    p.stdout.on('data', (d: Buffer) => out.push(d));
    p.stderr.on('data', (d: Buffer) => out.push(d));
    p.on('error', reject);
    p.on('close', (code) => {
      const text = Buffer.concat(out).toString('utf8');
      appendFileSync(log, `$ ${cmd} ${args.join(' ')}\n${text}\n`);
      if (code === 0) resolve();
      else reject(new Error(`${cmd} ${args.join(' ')} exited ${code}:\n${text.slice(-3000)}`));
    });
  });
}

/** One cached artefact: its name, its recipe text, how to build it into a directory. */
export interface Step {
  name: string;
  recipe: string;
  build: (out: string) => Promise<void>;
}

/** Builds `step` into `<cache>/<name>` unless its stamp matches; returns its recipe hash. */
export async function cached(
  cache: string,
  step: Step,
  timings: Record<string, number>,
): Promise<string> {
  const out = join(cache, step.name);
  const stamp = `${out}.stamp`;
  const want = sha256(step.name, step.recipe);
  const have = existsSync(stamp) ? (await readFile(stamp, 'utf8')).trim() : '';
  // FERRY_VM_FROZEN=1 (development only) reuses whatever is built, stale or not.
  const frozen = process.env.FERRY_VM_FROZEN === '1' && have !== '';
  if ((have === want || frozen) && existsSync(out)) {
    timings[step.name] = 0;
    return want;
  }
  const t0 = Date.now();
  await rm(stamp, { force: true });
  await rm(out, { recursive: true, force: true });
  const tmp = `${out}.tmp`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  await step.build(tmp);
  await rename(tmp, out);
  await writeFile(stamp, `${want}\n`);
  timings[step.name] = (Date.now() - t0) / 1000;
  return want;
}

/** Runs `fn` holding the cache lock (a directory with the holder's pid; a dead holder's is broken). */
export async function withLock<T>(cache: string, fn: () => Promise<T>): Promise<T> {
  const lock = join(cache, '.lock');
  const deadline = Date.now() + 30 * 60_000;
  for (;;) {
    try {
      await mkdir(lock);
      await writeFile(join(lock, 'pid'), String(process.pid));
      break;
    } catch {
      const pid = Number(await readFile(join(lock, 'pid'), 'utf8').catch(() => 'NaN'));
      if (Number.isInteger(pid) && !alive(pid)) await rm(lock, { recursive: true, force: true });
      if (Date.now() > deadline) throw new Error(`cache lock ${lock} held for 30 min`);
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lock, { recursive: true, force: true });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
