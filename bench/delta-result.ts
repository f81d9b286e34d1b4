/**
 * The row type every delta peer returns, a memo that keeps one measurement per tool and input
 * (under .cache/bench/delta/results), and small file helpers the peers share.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { CACHE } from './delta-data.ts';

/** One peer on one pair: bytes a device downloads, or why it could not run. */
export interface DeltaRow {
  peer: string;
  pair: string;
  bytes?: number;
  publishSeconds?: number;
  applySeconds?: number;
  /** Whether the applied result was checked against the target (hash or tree compare). */
  verified?: boolean;
  note?: string;
  error?: string;
}

/** Options every peer gets. */
export interface PeerContext {
  fresh: boolean;
  log: (line: string) => void;
}

/**
 * Runs `fn` unless rows for `name` with the same `key` are cached; a thrown error becomes one row
 * with `error` (the peer could not run, the table says why).
 */
export async function memoRows(
  ctx: PeerContext,
  name: string,
  key: unknown,
  fn: () => Promise<DeltaRow[]>,
): Promise<DeltaRow[]> {
  const dir = join(CACHE, 'results');
  await mkdir(dir, { recursive: true });
  const file = join(dir, `${name.replace(/[^a-z0-9.-]+/gi, '_')}.json`);
  const k = JSON.stringify(key);
  if (!ctx.fresh) {
    const hit = await readFile(file, 'utf8').catch(() => '');
    if (hit) {
      const saved = JSON.parse(hit) as { key: string; rows: DeltaRow[] };
      if (saved.key === k && Array.isArray(saved.rows)) return saved.rows;
    }
  }
  ctx.log(`delta: measuring ${name}`);
  let rows: DeltaRow[];
  try {
    rows = await fn();
  } catch (e) {
    const [peer, pair] = name.split('@');
    // Not cached: a peer that could not run (a tool missing) is tried again next time.
    return [{ peer: peer ?? name, pair: pair ?? '', error: (e as Error).message.slice(0, 300) }];
  }
  await writeFile(file, JSON.stringify({ key: k, rows }));
  return rows;
}

/** {@link memoRows} for a peer that gives one row. */
export async function memo(
  ctx: PeerContext,
  name: string,
  key: unknown,
  fn: () => Promise<DeltaRow>,
): Promise<DeltaRow> {
  const rows = await memoRows(ctx, name, key, async () => [await fn()]);
  return rows[0]!;
}

/** SHA-256 of a file, hex. */
export async function fileSha256(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(c as Buffer);
  return h.digest('hex');
}

/** Every regular file under `dir` by relative path, with its size. */
export async function filesUnder(dir: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  for (const e of entries) {
    if (!e.isFile()) continue;
    const p = join(e.parentPath, e.name);
    out.set(relative(dir, p), (await stat(p)).size);
  }
  return out;
}

/** Bytes of the files in `b` whose relative path is not in `a` (objects or chunks by name). */
export function bytesNotIn(a: Map<string, number>, b: Map<string, number>): number {
  let n = 0;
  for (const [name, size] of b) if (!a.has(name)) n += size;
  return n;
}
