/**
 * Delta packs: the chunks a device lacks, sent as segments, each one zstd frame of the
 * concatenated target chunks compressed against a dictionary made of base chunks the device
 * holds (docs/formats/delta.md). Planning is pure; encoding and decoding take chunk getters, so
 * the same code serves a server with a chunk store and a device reading its own slot.
 *
 * A pack is not signed and need not be: decoding checks every field against bounds, every
 * output chunk against its SHA-256 id, and every id against the signed target index.
 */
import { chunkId } from './chunk-codec.ts';
import type { ChunkIndex, ChunkIndexEntry } from './chunk-index.ts';
import {
  DEFAULT_DELTA_ZSTD_LEVEL,
  MAX_DELTA_WINDOW,
  decodeChunkDelta,
  encodeChunkDelta,
} from './delta-codec.ts';
import { FerryError } from './errors.ts';

/** One segment: base chunks forming the dictionary, then the target chunks it yields. */
export interface DeltaSegment {
  refs: ChunkIndexEntry[];
  out: ChunkIndexEntry[];
}

/** The first 8 bytes of a delta pack: ASCII "FERRYDPK". */
export const DELTA_PACK_MAGIC = Buffer.from('FERRYDPK', 'ascii');
/** Default bound of one segment's dictionary plus output (device memory per segment). */
export const DEFAULT_SEGMENT_BYTES = 32 << 20;
const MAX_COUNT = 65536;

function invalid(why: string): never {
  throw new FerryError('DELTA_INVALID', `invalid delta pack: ${why}`);
}

/**
 * Splits the distinct target chunks the device lacks, in image order, into segments of at most
 * `segmentBytes` (refs + output). `similar(id)` names the base chunk to use as reference for a
 * missing chunk (or undefined); a reference is listed once per segment.
 *
 * @example
 * const segs = planDeltaPack(target, (id) => have.has(id), (id) => best.get(id));
 */
export function planDeltaPack(
  target: ChunkIndex,
  have: (id: string) => boolean,
  similar: (id: string) => ChunkIndexEntry | undefined,
  segmentBytes = DEFAULT_SEGMENT_BYTES,
): DeltaSegment[] {
  const segments: DeltaSegment[] = [];
  let cur: DeltaSegment = { refs: [], out: [] };
  let curRefs = new Set<string>();
  let bytes = 0;
  const seen = new Set<string>();
  for (const c of target.chunks) {
    if (seen.has(c.id) || have(c.id)) continue;
    seen.add(c.id);
    const ref = similar(c.id);
    const add = c.size + (ref && !curRefs.has(ref.id) ? ref.size : 0);
    if (cur.out.length > 0 && (bytes + add > segmentBytes || cur.out.length >= MAX_COUNT - 1)) {
      segments.push(cur);
      cur = { refs: [], out: [] };
      curRefs = new Set();
      bytes = 0;
    }
    if (ref && !curRefs.has(ref.id)) {
      curRefs.add(ref.id);
      cur.refs.push(ref);
      bytes += ref.size;
    }
    cur.out.push(c);
    bytes += c.size;
  }
  if (cur.out.length > 0) segments.push(cur);
  return segments;
}

function concat(entries: ChunkIndexEntry[], get: (e: ChunkIndexEntry) => Uint8Array): Buffer {
  return Buffer.concat(entries.map((e) => get(e)));
}

/**
 * Encodes the segments into one pack (deterministic for a given zstd and level).
 *
 * @example
 * const pack = encodeDeltaPack(segs, (e) => baseChunk(e.id), (e) => targetChunk(e.id));
 */
export function encodeDeltaPack(
  segments: DeltaSegment[],
  getBase: (e: ChunkIndexEntry) => Uint8Array,
  getTarget: (e: ChunkIndexEntry) => Uint8Array,
  level = DEFAULT_DELTA_ZSTD_LEVEL,
): Buffer {
  const parts: Buffer[] = [];
  const head = Buffer.alloc(16);
  DELTA_PACK_MAGIC.copy(head, 0);
  head.writeUInt16LE(1, 8);
  head.writeUInt32LE(segments.length, 12);
  parts.push(head);
  for (const s of segments) {
    const frame = encodeChunkDelta(concat(s.refs, getBase), concat(s.out, getTarget), level);
    const h = Buffer.alloc(16 + 32 * s.refs.length + 36 * s.out.length);
    h.writeUInt32LE(s.refs.length, 0);
    h.writeUInt32LE(s.out.length, 4);
    h.writeBigUInt64LE(BigInt(frame.length), 8);
    let pos = 16;
    for (const r of s.refs) pos += h.write(r.id, pos, 'hex');
    for (const o of s.out) {
      pos += h.write(o.id, pos, 'hex');
      pos = h.writeUInt32LE(o.size, pos);
    }
    parts.push(h, frame);
  }
  return Buffer.concat(parts);
}

/** A chunk produced by a pack, verified against its id. */
export interface DecodedChunk {
  id: string;
  data: Buffer;
}

/**
 * Decodes an untrusted pack against the device's base chunks. `getBase(id)` returns a chunk the
 * device holds (already verified) or undefined. Throws DELTA_INVALID (malformed, oversized),
 * DELTA_BASE_MISSING, DELTA_UNEXPECTED_CHUNK (an id the target index does not list) or
 * CHUNK_HASH_MISMATCH.
 *
 * @example
 * for (const c of decodeDeltaPack(pack, target, (id) => seed.get(id))) newChunks.set(c.id, c.data);
 */
export function decodeDeltaPack(
  pack: Uint8Array,
  target: ChunkIndex,
  getBase: (id: string) => Uint8Array | undefined,
): DecodedChunk[] {
  const buf = Buffer.from(pack.buffer, pack.byteOffset, pack.byteLength);
  if (buf.length < 16 || !buf.subarray(0, 8).equals(DELTA_PACK_MAGIC)) invalid('bad magic');
  if (buf.readUInt16LE(8) !== 1 || buf.readUInt16LE(10) !== 0) invalid('unknown version');
  const sizes = new Map(target.chunks.map((c) => [c.id, c.size]));
  const out: DecodedChunk[] = [];
  let pos = 16;
  for (let n = buf.readUInt32LE(12), s = 0; s < n; s++) {
    if (pos + 16 > buf.length) invalid('truncated segment header');
    const nRefs = buf.readUInt32LE(pos);
    const nOut = buf.readUInt32LE(pos + 4);
    const frameLen = Number(buf.readBigUInt64LE(pos + 8));
    // Attack stopped: counts that would make us allocate or loop before the length check.
    if (nRefs > MAX_COUNT || nOut > MAX_COUNT || nOut === 0) invalid('segment counts out of range');
    const end = pos + 16 + 32 * nRefs + 36 * nOut + frameLen;
    if (end > buf.length) invalid('segment runs past the pack');
    pos += 16;
    const refs: Uint8Array[] = [];
    for (let i = 0; i < nRefs; i++, pos += 32) {
      const id = buf.toString('hex', pos, pos + 32);
      const data = getBase(id);
      if (!data) throw new FerryError('DELTA_BASE_MISSING', `delta needs base chunk ${id}`);
      refs.push(data);
    }
    const want: ChunkIndexEntry[] = [];
    let total = refs.reduce((a, r) => a + r.length, 1);
    for (let i = 0; i < nOut; i++, pos += 36) {
      const id = buf.toString('hex', pos, pos + 32);
      const size = buf.readUInt32LE(pos + 32);
      if (sizes.get(id) !== size)
        throw new FerryError(
          'DELTA_UNEXPECTED_CHUNK',
          `chunk ${id} (${size} bytes) is not in the target`,
        );
      want.push({ id, size });
      total += size;
    }
    if (total > MAX_DELTA_WINDOW) invalid(`segment spans ${total} bytes`);
    const outLen = total - refs.reduce((a, r) => a + r.length, 1);
    const data = decodeChunkDelta(Buffer.concat(refs), buf.subarray(pos, end), outLen);
    if (data.length !== outLen) invalid(`segment decodes to ${data.length} bytes, not ${outLen}`);
    let at = 0;
    for (const w of want) {
      const chunk = data.subarray(at, (at += w.size));
      if (chunkId(chunk) !== w.id)
        throw new FerryError('CHUNK_HASH_MISMATCH', `delta output does not hash to ${w.id}`);
      out.push({ id: w.id, data: chunk });
    }
    pos = end;
  }
  if (pos !== buf.length) invalid('bytes after the last segment');
  return out;
}
