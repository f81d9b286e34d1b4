/**
 * Health checks: every executable in the health directory (sorted by name) runs with a timeout;
 * all must exit 0 for a booted slot to be marked good. A check that hangs is killed with its
 * whole process group when the timeout passes.
 */
import { spawn } from 'node:child_process';
import { access, constants, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';

export interface HealthResult {
  name: string;
  ok: boolean;
  exitCode: number | null;
  timedOut: boolean;
  seconds: number;
  /** Last line of output, for the record. */
  detail: string;
}

/** Executable regular files in `dir`, sorted; none if the directory does not exist. */
export async function listHealthChecks(dir: string): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const out: string[] = [];
  for (const n of names.sort()) {
    if (n.startsWith('.')) continue;
    const p = join(dir, n);
    const st = await stat(p).catch(() => undefined);
    if (
      st?.isFile() &&
      (await access(p, constants.X_OK).then(
        () => true,
        () => false,
      ))
    )
      out.push(p);
  }
  return out;
}

/** Runs one check with a timeout; never throws. */
export function runHealthCheck(
  path: string,
  timeoutSeconds: number,
  env: Record<string, string>,
): Promise<HealthResult> {
  const start = Date.now();
  return new Promise((resolve) => {
    const child = spawn(path, [], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let tail = '';
    const keep = (d: Buffer) => {
      tail = (tail + d.toString()).slice(-2000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, 'SIGKILL'); // the check's whole process group
      } catch {
        child.kill('SIGKILL');
      }
    }, timeoutSeconds * 1000);
    const done = (exitCode: number | null, detail?: string) => {
      clearTimeout(timer);
      const last = detail ?? tail.trim().split('\n').at(-1) ?? '';
      resolve({
        name: path,
        ok: exitCode === 0 && !timedOut,
        exitCode,
        timedOut,
        seconds: (Date.now() - start) / 1000,
        detail: timedOut ? `timed out after ${timeoutSeconds}s` : last,
      });
    };
    child.on('error', (e) => done(null, e.message));
    child.on('close', (code) => done(code));
  });
}

/** Runs every check in order, stopping at the first failure. */
export async function runHealthChecks(
  dir: string,
  timeoutSeconds: number,
  env: Record<string, string>,
): Promise<HealthResult[]> {
  const results: HealthResult[] = [];
  for (const p of await listHealthChecks(dir)) {
    const r = await runHealthCheck(p, timeoutSeconds, env);
    results.push(r);
    if (!r.ok) break;
  }
  return results;
}
