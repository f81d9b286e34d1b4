/**
 * Small helpers shared by the benchmarks: timing, throughput, external tools, file warming and a
 * plain-text table. Throughput is in MB/s with MB = 10^6 bytes, as most tools report it.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';

/** Runs `fn` and returns its result with the wall time in seconds. */
export async function timeIt<T>(fn: () => Promise<T> | T): Promise<{ result: T; seconds: number }> {
  const start = process.hrtime.bigint();
  const result = await fn();
  return { result, seconds: Number(process.hrtime.bigint() - start) / 1e9 };
}

/** Throughput in MB/s (10^6 bytes per second). */
export function mbPerSec(bytes: number, seconds: number): number {
  return seconds > 0 ? bytes / 1e6 / seconds : Infinity;
}

/** Whether an executable named `tool` is on PATH. */
export function haveTool(tool: string): boolean {
  return spawnSync('sh', ['-c', 'command -v "$1"', 'sh', tool], { stdio: 'ignore' }).status === 0;
}

/** Runs a command to completion, collecting output; rejects if it exits non-zero. */
export function run(cmd: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve({ stdout, stderr });
      else reject(new Error(`${cmd} exited with ${code}: ${stderr.trim().slice(-500)}`));
    });
  });
}

/** Reads a file once so later runs find it in the page cache. Returns its size. */
export async function warmFile(path: string): Promise<number> {
  let n = 0;
  for await (const buf of createReadStream(path, { highWaterMark: 1 << 20 }))
    n += (buf as Buffer).length;
  return n;
}

/** Total bytes and file count under `dir` (recursive; 0 if it does not exist). */
export async function dirUsage(dir: string): Promise<{ bytes: number; files: number }> {
  let bytes = 0;
  let files = 0;
  const entries = await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => []);
  for (const e of entries) {
    if (!e.isFile()) continue;
    bytes += (await stat(join(e.parentPath, e.name))).size;
    files++;
  }
  return { bytes, files };
}

/** Formats rows as an aligned plain-text table; numbers are right-aligned. */
export function formatTable(headers: string[], rows: (string | number)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map((c) => String(c)))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[], raw: (string | number)[]) =>
    r
      .map((c, i) => (typeof raw[i] === 'number' ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  const out = [line(headers, headers), widths.map((w) => '-'.repeat(w)).join('  ')];
  rows.forEach((r, k) => out.push(line(cells[k + 1]!, r)));
  return out.join('\n');
}

/** Rounds for display: `digits` decimals. */
export function round(x: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
