/**
 * Ferry's rows of the delta benchmark. "Today": the image chunks (FastCDC, 64 KiB) a device lacks
 * given its base image, each one zstd -3 frame, plus the chunk index. Stage 2 prototypes on the
 * uncompressed erofs image: the same missing chunks at zstd -19, each coded against the most
 * similar base chunk (sketch votes), and delta packs (packages/core/src/delta-pack.ts). Each apply
 * rebuilds the image from the base image plus what was sent and checks its SHA-256.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import {
  Chunker,
  DEFAULT_CHUNKER_PARAMS,
  type ChunkerParams,
} from '../packages/core/src/chunker.ts';
import { chunkId, compressChunk, decompressChunk } from '../packages/core/src/chunk-codec.ts';
import {
  serializeChunkIndex,
  type ChunkIndex,
  type ChunkIndexEntry,
} from '../packages/core/src/chunk-index.ts';
import { decodeChunkDelta, encodeChunkDelta } from '../packages/core/src/delta-codec.ts';
import {
  decodeDeltaPack,
  encodeDeltaPack,
  planDeltaPack,
} from '../packages/core/src/delta-pack.ts';
import { chunkSketch, SimilarityIndex } from '../packages/core/src/delta-sketch.ts';
import type { DeltaRow } from './delta-result.ts';
import { timeIt } from './lib.ts';

/** An image in memory, cut into chunks. */
export interface CutImage {
  data: Buffer;
  index: ChunkIndex;
  offsets: number[];
  /** First occurrence of each chunk id: where its bytes are. */
  byId: Map<string, number>;
}

/** Reads and chunks an image with Ferry's chunker. */
export async function cutImage(
  path: string,
  params: ChunkerParams = DEFAULT_CHUNKER_PARAMS,
): Promise<CutImage> {
  const data = await readFile(path);
  const chunker = new Chunker(params);
  const ends = chunker.push(data);
  if (chunker.finish() > 0) ends.push(data.length);
  const chunks: ChunkIndexEntry[] = [];
  const offsets: number[] = [];
  const byId = new Map<string, number>();
  let start = 0;
  for (const end of ends) {
    const id = chunkId(data.subarray(start, end));
    chunks.push({ id, size: end - start });
    offsets.push(start);
    if (!byId.has(id)) byId.set(id, start);
    start = end;
  }
  const imageSha256 = createHash('sha256').update(data).digest('hex');
  return { data, index: { params, imageSize: data.length, imageSha256, chunks }, offsets, byId };
}

function bytesOf(img: CutImage, e: ChunkIndexEntry): Buffer {
  const at = img.byId.get(e.id);
  if (at === undefined) throw new Error(`chunk ${e.id} not in image`);
  return img.data.subarray(at, at + e.size);
}

/** Distinct chunks of `target` that `base` lacks, in image order. */
export function missingChunks(base: CutImage, target: CutImage): ChunkIndexEntry[] {
  const seen = new Set<string>();
  return target.index.chunks.filter((c) => {
    if (base.byId.has(c.id) || seen.has(c.id)) return false;
    seen.add(c.id);
    return true;
  });
}

const indexBytes = (img: CutImage) => 72 + 36 * img.index.chunks.length;

/** The target's chunk index coded against the base's (the device holds it); checked on decode. */
function indexDelta(base: CutImage, target: CutImage): { delta: Buffer; check: () => boolean } {
  const bi = serializeChunkIndex(base.index);
  const ti = serializeChunkIndex(target.index);
  const delta = encodeChunkDelta(bi, ti);
  const want = chunkId(ti);
  return { delta, check: () => chunkId(decodeChunkDelta(bi, delta, 1 << 28)) === want };
}

/** Rebuilds the target image from the base image and the new chunks; checks its SHA-256. */
function assemble(base: CutImage, target: ChunkIndex, fresh: Map<string, Buffer>): boolean {
  const out = Buffer.allocUnsafe(target.imageSize);
  let pos = 0;
  for (const c of target.chunks) {
    const at = base.byId.get(c.id);
    const src = at !== undefined ? base.data.subarray(at, at + c.size) : fresh.get(c.id);
    if (!src) throw new Error(`chunk ${c.id} neither in the seed nor sent`);
    pos += src.copy(out, pos);
  }
  return createHash('sha256').update(out).digest('hex') === target.imageSha256;
}

/** Re-cuts the base image as a device does to find its seeds (timed as part of apply). */
async function seedScan(path: string, params: ChunkerParams): Promise<CutImage> {
  return cutImage(path, params);
}

/** Ferry today: missing chunks as zstd frames at `level` (3 is what the store writes). */
export async function ferryChunks(
  label: string,
  pair: string,
  basePath: string,
  targetPath: string,
  level = 3,
): Promise<DeltaRow> {
  const publish = await timeIt(async () => {
    const t = await cutImage(targetPath);
    const frames = new Map<string, Buffer>();
    // Publishing = cutting, hashing and compressing every distinct chunk of the target.
    for (const c of missingChunks({ ...t, byId: new Map() }, t))
      frames.set(c.id, compressChunk(bytesOf(t, c), level));
    return { t, frames };
  });
  const { t: target, frames } = publish.result;
  const base = await cutImage(basePath);
  const missing = missingChunks(base, target);
  let sent = indexBytes(target);
  for (const c of missing) sent += frames.get(c.id)!.length;
  const apply = await timeIt(async () => {
    const seed = await seedScan(basePath, target.index.params);
    const fresh = new Map<string, Buffer>();
    for (const c of missing) fresh.set(c.id, decompressChunk(c.id, frames.get(c.id)!, c.size));
    return assemble(seed, target.index, fresh);
  });
  return {
    peer: `Ferry ${label}, chunks zstd -${level}`,
    pair,
    bytes: sent,
    publishSeconds: publish.seconds,
    applySeconds: apply.seconds,
    verified: apply.result,
    note: `${missing.length}/${target.index.chunks.length} chunks + index; any base`,
  };
}

/** For each missing chunk, the most similar base chunk by sketch votes (or undefined). */
export function chooseBases(base: CutImage, target: CutImage, missing: ChunkIndexEntry[]) {
  const idx = new SimilarityIndex<ChunkIndexEntry>();
  const seen = new Set<string>();
  for (const c of base.index.chunks) {
    if (seen.has(c.id)) continue;
    seen.add(c.id);
    idx.add(c, chunkSketch(bytesOf(base, c)));
  }
  const best = new Map<string, ChunkIndexEntry>();
  for (const c of missing) {
    const m = idx.mostSimilar(chunkSketch(bytesOf(target, c)));
    if (m) best.set(c.id, m.key);
  }
  return best;
}

/** Stage 2: each missing chunk coded against its most similar base chunk (any base holding it). */
export async function ferryChunkDeltas(
  label: string,
  pair: string,
  basePath: string,
  targetPath: string,
  level: number,
): Promise<DeltaRow> {
  const base = await cutImage(basePath);
  const target = await cutImage(targetPath);
  const missing = missingChunks(base, target);
  const publish = await timeIt(() => {
    const best = chooseBases(base, target, missing);
    return new Map(
      missing.map((c) => {
        const ref = best.get(c.id);
        return [
          c.id,
          {
            ref,
            delta: encodeChunkDelta(
              ref ? bytesOf(base, ref) : new Uint8Array(0),
              bytesOf(target, c),
              level,
            ),
          },
        ];
      }),
    );
  });
  const deltas = publish.result;
  let sent = indexBytes(target);
  let withRef = 0;
  for (const d of deltas.values()) {
    sent += d.delta.length + (d.ref ? 32 : 0);
    if (d.ref) withRef++;
  }
  const apply = await timeIt(async () => {
    const seed = await seedScan(basePath, target.index.params);
    const fresh = new Map<string, Buffer>();
    for (const c of missing) {
      const d = deltas.get(c.id)!;
      const ref = d.ref ? bytesOf(seed, d.ref) : new Uint8Array(0);
      fresh.set(c.id, decodeChunkDelta(ref, d.delta, c.size, c.id));
    }
    return assemble(seed, target.index, fresh);
  });
  return {
    peer: `Ferry per-chunk similarity deltas, ${label}, zstd -${level}`,
    pair,
    bytes: sent,
    publishSeconds: publish.seconds,
    applySeconds: apply.seconds,
    verified: apply.result,
    note: `${withRef}/${missing.length} chunks coded against a similar base chunk + index; static`,
  };
}

/** Stage 2: a delta pack (segments against similar base chunks) plus the index as a delta. */
export async function ferryDeltaPack(
  label: string,
  pair: string,
  basePath: string,
  targetPath: string,
  level: number,
): Promise<DeltaRow> {
  const base = await cutImage(basePath);
  const target = await cutImage(targetPath);
  const publish = await timeIt(() => {
    const best = chooseBases(base, target, missingChunks(base, target));
    const segs = planDeltaPack(
      target.index,
      (id) => base.byId.has(id),
      (id) => best.get(id),
    );
    const pack = encodeDeltaPack(
      segs,
      (e) => bytesOf(base, e),
      (e) => bytesOf(target, e),
      level,
    );
    return { segs, pack, index: indexDelta(base, target) };
  });
  const { segs, pack, index } = publish.result;
  const apply = await timeIt(async () => {
    const seed = await seedScan(basePath, target.index.params);
    if (!index.check()) return false;
    const sizes = new Map(seed.index.chunks.map((c) => [c.id, c.size]));
    const get = (id: string) => {
      const at = seed.byId.get(id);
      return at === undefined ? undefined : seed.data.subarray(at, at + sizes.get(id)!);
    };
    const fresh = new Map(decodeDeltaPack(pack, target.index, get).map((c) => [c.id, c.data]));
    return assemble(seed, target.index, fresh);
  });
  const refs = segs.reduce((a, s) => a + s.refs.length, 0);
  const outs = segs.reduce((a, s) => a + s.out.length, 0);
  return {
    peer: `Ferry delta pack, ${label}, zstd -${level}`,
    pair,
    bytes: pack.length + index.delta.length,
    publishSeconds: publish.seconds,
    applySeconds: apply.seconds,
    verified: apply.result,
    note: `${outs} chunks in ${segs.length} segments against ${refs} base chunks; index delta ${index.delta.length} B; per base`,
  };
}
