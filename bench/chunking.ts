/**
 * Chunking benchmark: Ferry's FastCDC chunker, hashing and chunk store against `casync make` on
 * the same image, in the same run.
 *
 *   node bench/chunking.ts [--size-mib N] [--file PATH] [--no-casync] [--no-fsync-run]
 *
 * Without --file it builds a deterministic image of N MiB (default 1024) under .cache/bench/:
 * real files from /usr in sorted path order, each padded to 4 KiB like a file system image,
 * then (for the second half) the same files again with one byte changed per 256 KiB, so the
 * image has realistic content, some internal duplication and small edits. The file is read once
 * before timing, so every run reads it from the page cache (dropping caches is not possible here).
 */
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Chunker, chunkStream } from '../packages/core/src/chunker.ts';
import { ChunkStore } from '../packages/core/src/chunk-store.ts';
import { dirUsage, formatTable, haveTool, mbPerSec, round, run, timeIt, warmFile } from './lib.ts';

/** Options of runChunkingBench. */
export interface ChunkingBenchOptions {
  /** Size of the generated image in MiB (ignored with `file`). Default 1024. */
  sizeMiB?: number;
  /** Benchmark this file instead of a generated image. */
  file?: string;
  /** Where images and temporary stores go. Default <repo>/.cache/bench. */
  cacheDir?: string;
  /** Also run casync (if installed). Default true. */
  casync?: boolean;
  /** Also run the store with fsync on (slow: two fsyncs per new chunk). Default true. */
  fsyncRun?: boolean;
  /** Progress lines. */
  log?: (line: string) => void;
}

/** One measured configuration. */
export interface ChunkingBenchRow {
  name: string;
  seconds: number;
  mbPerSec: number;
  chunks: number;
  uniqueChunks: number;
  avgChunkBytes: number;
  storeBytes?: number;
}

/** Everything runChunkingBench measured. */
export interface ChunkingBenchResult {
  file: string;
  bytes: number;
  pageCacheWarmed: true;
  boundaryOnlyMBps: number;
  rows: ChunkingBenchRow[];
  /** Ferry store (fsync off) MB/s divided by casync make (defaults) MB/s, if casync ran. */
  ferryOverCasync?: number;
}

const MiB = 1024 * 1024;
const READ_BUFFER = MiB;

async function* usrFiles(): AsyncGenerator<string> {
  const entries = await readdir('/usr', { withFileTypes: true, recursive: true });
  const files = entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
  yield* files.sort();
}

/** A small edit every 256 KiB, as an update touches a few bytes of many files. Returns the rng. */
function mutate(data: Buffer, rng: number): number {
  for (let p = (rng >>> 14) % 262144; p < data.length; p += 262144) {
    rng = (Math.imul(rng, 1664525) + 1013904223) >>> 0;
    data[p] = data[p]! ^ (1 + (rng & 0x7f));
  }
  return rng;
}

/** Writes the deterministic image described in the file comment. */
async function generateImage(path: string, size: number): Promise<void> {
  const fh = await open(`${path}.tmp`, 'w');
  let written = 0;
  let rng = 0x9e3779b9;
  for (let pass = 0; written < size; pass++) {
    const half = pass === 0 ? size / 2 : size;
    for await (const file of usrFiles()) {
      if (written >= half) break;
      const data = await readFile(file).catch(() => undefined);
      if (!data?.length) continue;
      if (pass > 0) rng = mutate(data, rng);
      const padded = Buffer.alloc(Math.min(Math.ceil(data.length / 4096) * 4096, size - written));
      data.copy(padded, 0, 0, padded.length);
      await fh.write(padded);
      written += padded.length;
    }
  }
  await fh.close();
  await rm(path, { force: true });
  await rename(`${path}.tmp`, path);
}

function readStream(file: string) {
  return createReadStream(file, { highWaterMark: READ_BUFFER }) as AsyncIterable<Buffer>;
}

async function boundaryOnly(file: string): Promise<number> {
  const chunker = new Chunker();
  let n = 0;
  for await (const buf of readStream(file)) n += chunker.push(buf).length;
  return n + (chunker.finish() > 0 ? 1 : 0);
}

async function chunkAndHash(file: string): Promise<{ chunks: number; unique: number }> {
  const ids = new Set<string>();
  let chunks = 0;
  for await (const c of chunkStream(readStream(file))) {
    chunks++;
    ids.add(c.id);
  }
  return { chunks, unique: ids.size };
}

/** Chunks, hashes and stores, keeping a few compressions in flight on the libuv pool. */
async function chunkIntoStore(file: string, dir: string, fsync: boolean) {
  const store = new ChunkStore(dir, { fsync });
  const inflight = new Set<Promise<void>>();
  let chunks = 0;
  for await (const c of chunkStream(readStream(file))) {
    chunks++;
    const p: Promise<void> = store.put(c.id, c.data).then(() => {
      inflight.delete(p);
    });
    inflight.add(p);
    if (inflight.size >= 4) await Promise.race(inflight);
  }
  await Promise.all(inflight);
  return { chunks };
}

async function casyncMake(file: string, work: string, extra: string[]) {
  const storeDir = join(work, 'casync.castr');
  const index = join(work, 'image.caibx');
  await run('casync', ['make', ...extra, `--store=${storeDir}`, index, file]);
  // caibx: 48-byte header, 16-byte table header, 40 bytes per chunk, 40-byte tail.
  const chunks = ((await stat(index)).size - 48 - 16 - 40) / 40;
  const usage = await dirUsage(storeDir);
  return { chunks, unique: usage.files, storeBytes: usage.bytes };
}

/**
 * Runs every configuration on one image and returns the figures.
 *
 * @example
 * const r = await runChunkingBench({ sizeMiB: 256, casync: false });
 */
export async function runChunkingBench(
  opts: ChunkingBenchOptions = {},
): Promise<ChunkingBenchResult> {
  const log = opts.log ?? (() => {});
  const cacheDir = opts.cacheDir ?? join(import.meta.dirname, '..', '.cache', 'bench');
  await mkdir(cacheDir, { recursive: true });
  const sizeMiB = opts.sizeMiB ?? 1024;
  const file = opts.file ?? join(cacheDir, `chunking-usr-${sizeMiB}MiB.img`);
  if (!opts.file && (await stat(file).catch(() => undefined))?.size !== sizeMiB * MiB) {
    log(`generating ${file} ...`);
    await generateImage(file, sizeMiB * MiB);
  }
  log(`warming the page cache with one read of ${file}`);
  const bytes = await warmFile(file);
  const work = join(cacheDir, `chunking-work-${process.pid}`);
  const rows: ChunkingBenchRow[] = [];
  const row = (
    name: string,
    seconds: number,
    r: { chunks: number; unique: number; storeBytes?: number },
  ) => {
    const out = {
      name,
      seconds,
      mbPerSec: mbPerSec(bytes, seconds),
      chunks: r.chunks,
      uniqueChunks: r.unique,
      avgChunkBytes: bytes / r.chunks,
      storeBytes: r.storeBytes,
    };
    rows.push(out);
    log(`${name}: ${round(out.mbPerSec)} MB/s`);
  };
  const fresh = async () => {
    await rm(work, { recursive: true, force: true });
    await mkdir(work, { recursive: true });
    return work;
  };
  try {
    const b = await timeIt(() => boundaryOnly(file));
    row('Ferry boundaries only (FastCDC)', b.seconds, { chunks: b.result, unique: NaN });
    const h = await timeIt(() => chunkAndHash(file));
    row('Ferry chunk + sha256', h.seconds, h.result);
    const configs: [string, boolean][] = [
      ['Ferry chunk + sha256 + zstd-3 -> store, no fsync', false],
    ];
    if (opts.fsyncRun ?? true)
      configs.push(['Ferry chunk + sha256 + zstd-3 -> store, fsync', true]);
    for (const [name, fsync] of configs) {
      const dir = join(await fresh(), 'store');
      const s = await timeIt(() => chunkIntoStore(file, dir, fsync));
      // Unique chunks counted from the store: two racing puts of one id may both say "written".
      const usage = await dirUsage(dir);
      row(name, s.seconds, {
        chunks: s.result.chunks,
        unique: usage.files,
        storeBytes: usage.bytes,
      });
    }
    if ((opts.casync ?? true) && haveTool('casync')) {
      for (const [name, extra] of [
        ['casync make (defaults: sha512-256, zstd)', []],
        ['casync make --digest=sha256 (zstd)', ['--digest=sha256']],
      ] as [string, string[]][]) {
        const c = await timeIt(async () => casyncMake(file, await fresh(), extra));
        row(name, c.seconds, c.result);
      }
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  const ferry = rows.find((r) => r.name.endsWith('store, no fsync'));
  const casync = rows.find((r) => r.name.startsWith('casync make (defaults'));
  return {
    file,
    bytes,
    pageCacheWarmed: true,
    boundaryOnlyMBps: rows[0]!.mbPerSec,
    rows,
    ferryOverCasync: ferry && casync ? ferry.mbPerSec / casync.mbPerSec : undefined,
  };
}

/** The result as a printable table. */
export function formatChunkingBench(r: ChunkingBenchResult): string {
  const casync = r.rows.find((x) => x.name.startsWith('casync make (defaults'));
  const table = formatTable(
    ['configuration', 's', 'MB/s', 'x casync', 'chunks', 'unique', 'avg KiB', 'store MiB'],
    r.rows.map((x) => [
      x.name,
      round(x.seconds, 2),
      round(x.mbPerSec),
      casync ? round(x.mbPerSec / casync.mbPerSec, 2) : '-',
      x.chunks,
      Number.isNaN(x.uniqueChunks) ? '-' : x.uniqueChunks,
      round(x.avgChunkBytes / 1024),
      x.storeBytes === undefined ? '-' : round(x.storeBytes / MiB),
    ]),
  );
  return (
    `image ${r.file}: ${round(r.bytes / MiB)} MiB, read once before timing (page cache warm)\n${table}\n` +
    `MB = 10^6 bytes; "x casync" = MB/s relative to casync make with its defaults.`
  );
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      'size-mib': { type: 'string' },
      file: { type: 'string' },
      'no-casync': { type: 'boolean' },
      'no-fsync-run': { type: 'boolean' },
    },
  });
  const result = await runChunkingBench({
    sizeMiB: values['size-mib'] ? Number(values['size-mib']) : undefined,
    file: values.file,
    casync: !values['no-casync'],
    fsyncRun: !values['no-fsync-run'],
    log: (line) => console.error(line),
  });
  console.log(formatChunkingBench(result));
}
