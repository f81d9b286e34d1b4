/**
 * Delta packs on the device (docs/formats/delta.md): before the write loop of a repository
 * install, the chunks the device lacks are produced from a pack against an image it holds, read
 * over ranged GETs one segment at a time. Nothing in a pack is trusted: every output chunk must
 * be listed (id and size) in the signed target index and hash to its id before a byte of it is
 * written, and every base chunk comes verified from a local slot. Whatever a pack does not
 * yield (404, limits, a refused segment) the write loop fetches as plain chunks.
 */
import { access } from 'node:fs/promises';
import {
  chunkOffsets,
  decodeDeltaPack,
  DELTA_PACK_MAGIC,
  encodeDeltaPack,
  FerryError,
  isFerryError,
  MAX_DELTA_WINDOW,
  type ChunkIndex,
} from '@ferry/core';
import type { SlotConfig, SystemConfig } from './config.ts';
import type { SeedLocation, SeedReader } from './seeds.ts';
import type { SlotDevice } from './slot-device.ts';
import { indexPath, type AgentState } from './state.ts';

/** Bytes `start..end` (inclusive) of one pack; fewer at its end. Throws FETCH_* codes. */
export type PackRange = (start: number, end: number) => Promise<Buffer>;

/** One ranged request reads at most this much: each stays within the per-request deadline. */
const PIECE = 1 << 20;
/**
 * Headers are read with this much read-ahead (and frames exactly), so a pack refused at its
 * first segment header costs at most this much.
 */
const AHEAD = 64 << 10;
const MAX_COUNT = 65536;
const SHA_RE = /^[0-9a-f]{64}$/;

function invalid(why: string): never {
  throw new FerryError('DELTA_INVALID', `invalid delta pack: ${why}`);
}

/**
 * The most bytes a pack for `target` may have: every distinct chunk in a worst-case zstd frame
 * plus its headers. Attack stopped: an endless pack (the byte cap of a plain download).
 */
export function maxPackBytes(target: ChunkIndex): number {
  const distinct = new Map(target.chunks.map((c) => [c.id, c.size]));
  let bytes = 0;
  for (const size of distinct.values()) bytes += size;
  return 16 + bytes + (bytes >>> 7) + distinct.size * (16 + 32 + 36 + 1024);
}

/** Reads a pack front to back through ranged requests, in pieces fetched in parallel. */
class PackReader {
  readonly #range: PackRange;
  readonly #parallel: number;
  readonly #cap: number;
  #at = 0;
  #win: Buffer = Buffer.alloc(0);
  bytes = 0;

  constructor(range: PackRange, parallel: number, cap: number) {
    this.#range = range;
    this.#parallel = Math.max(1, parallel);
    this.#cap = cap;
  }

  /** Exactly `len` bytes at `pos` (DELTA_INVALID if the pack ends or exceeds its cap first). */
  async read(pos: number, len: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    while (len > 0) {
      const end = this.#at + this.#win.length;
      if (pos >= this.#at && pos < end) {
        const take = Math.min(len, end - pos);
        parts.push(this.#win.subarray(pos - this.#at, pos - this.#at + take));
        pos += take;
        len -= take;
        continue;
      }
      const want = Math.min(Math.max(len, AHEAD), this.#cap - pos);
      if (want <= 0) invalid(`longer than ${this.#cap} bytes, the bound for this image`);
      this.#win = await this.#fetch(pos, want);
      this.#at = pos;
      if (this.#win.length < Math.min(len, want)) invalid('truncated');
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  async #fetch(pos: number, len: number): Promise<Buffer> {
    const ranges: Array<[number, number]> = [];
    for (let s = pos; s < pos + len; s += PIECE)
      ranges.push([s, Math.min(s + PIECE, pos + len) - 1]);
    const parts: Buffer[] = new Array<Buffer>(ranges.length);
    let next = 0;
    const worker = async () => {
      while (next < ranges.length) {
        const i = next++;
        parts[i] = await this.#range(...ranges[i]!);
        this.bytes += parts[i].length;
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#parallel, ranges.length) }, worker));
    return Buffer.concat(parts);
  }
}

/** Where the install stands while a pack is applied. */
export interface PackTarget {
  index: ChunkIndex;
  dev: SlotDevice;
  seeds: Map<string, SeedLocation>;
  reader: SeedReader;
  /** Target chunk positions already in place; the pack adds those it writes. */
  present: Set<number>;
}

/** What applying one pack did (also when it stopped early). */
export interface PackOutcome {
  bytes: number;
  chunks: number;
  error?: FerryError;
}

/** The target index by chunk id: size, and the positions (chunk numbers) holding it. */
interface Positions {
  sizes: Map<string, number>;
  where: Map<string, number[]>;
  offsets: number[];
}

function positions(index: ChunkIndex): Positions {
  const where = new Map<string, number[]>();
  index.chunks.forEach((c, i) => {
    const list = where.get(c.id);
    if (list) list.push(i);
    else where.set(c.id, [i]);
  });
  const sizes = new Map(index.chunks.map((c) => [c.id, c.size]));
  return { sizes, where, offsets: chunkOffsets(index) };
}

function segmentHeader(h: Buffer) {
  const nRefs = h.readUInt32LE(0);
  const nOut = h.readUInt32LE(4);
  const frameLen = Number(h.readBigUInt64LE(8));
  // Attack stopped: counts that would make us allocate or loop before any length check.
  if (nRefs > MAX_COUNT || nOut > MAX_COUNT || nOut === 0) invalid('segment counts out of range');
  return { nRefs, nOut, frameLen };
}

/**
 * Applies one segment at `pos` and returns where the next starts. The output ids are checked
 * against the signed index before the frame is fetched, so a pack for another image is refused
 * after its first header; a segment whose chunks are all in place is skipped (resume).
 */
async function applySegment(
  r: PackReader,
  pos: number,
  t: PackTarget,
  at: Positions,
  out: PackOutcome,
): Promise<number> {
  const h = await r.read(pos, 16);
  const { nRefs, nOut, frameLen } = segmentHeader(h);
  const ids = await r.read(pos + 16, 32 * nRefs + 36 * nOut);
  let outBytes = 0;
  let needed = false;
  for (let i = 0; i < nOut; i++) {
    const id = ids.toString('hex', 32 * nRefs + 36 * i, 32 * nRefs + 36 * i + 32);
    const size = ids.readUInt32LE(32 * nRefs + 36 * i + 32);
    if (at.sizes.get(id) !== size)
      throw new FerryError('DELTA_UNEXPECTED_CHUNK', `chunk ${id} is not in the target index`);
    outBytes += size;
    needed ||= !t.seeds.has(id) && at.where.get(id)!.some((p) => !t.present.has(p));
  }
  // Attack stopped: a frame far larger than the output it declares (zstd never needs that).
  if (frameLen > outBytes + (outBytes >>> 7) + 65536) invalid('frame larger than its output');
  const next = pos + 16 + ids.length + frameLen;
  if (!needed) return next;
  const refs = new Map<string, Buffer>();
  let window = outBytes + 1;
  for (let i = 0; i < nRefs; i++) {
    const id = ids.toString('hex', 32 * i, 32 * i + 32);
    const loc = t.seeds.get(id);
    const data = loc && (await t.reader.read(id, loc));
    if (!data) throw new FerryError('DELTA_BASE_MISSING', `delta needs base chunk ${id}`);
    refs.set(id, data);
    window += data.length;
  }
  if (window > MAX_DELTA_WINDOW) invalid(`segment spans ${window} bytes`);
  const frame = await r.read(pos + 16 + ids.length, frameLen);
  const head = encodeDeltaPack(
    [],
    () => Buffer.alloc(0),
    () => Buffer.alloc(0),
  );
  head.writeUInt32LE(1, 12);
  // The core decoder re-checks every bound, every id against the index, and every hash.
  const mini = Buffer.concat([head, h, ids, frame]);
  for (const c of decodeDeltaPack(mini, t.index, (id) => refs.get(id))) {
    if (t.seeds.has(c.id)) continue; // the write loop copies it from the slot holding it
    for (const p of at.where.get(c.id)!)
      if (!t.present.has(p)) {
        await t.dev.write(at.offsets[p]!, c.data);
        t.present.add(p);
      }
    out.chunks++;
  }
  return next;
}

/**
 * Applies the pack `range` reads to the target slot. Never throws for a bad or missing pack:
 * the outcome carries the error (DELTA_*, CHUNK_HASH_MISMATCH, FETCH_*) and the chunks already
 * written stay (each was verified). Slot I/O errors and aborts are thrown.
 *
 * @example
 * const o = await applyDeltaPack((a, b) => release.packRange(base, target, a, b), 4, t);
 */
export async function applyDeltaPack(
  range: PackRange,
  parallel: number,
  t: PackTarget,
): Promise<PackOutcome> {
  const r = new PackReader(range, parallel, maxPackBytes(t.index));
  const out: PackOutcome = { bytes: 0, chunks: 0 };
  const at = positions(t.index);
  try {
    const head = await r.read(0, 16);
    if (!head.subarray(0, 8).equals(DELTA_PACK_MAGIC)) invalid('bad magic');
    if (head.readUInt16LE(8) !== 1 || head.readUInt16LE(10) !== 0) invalid('unknown version');
    const count = head.readUInt32LE(12);
    if (count > at.sizes.size) invalid(`${count} segments for ${at.sizes.size} chunks`);
    for (let s = 0, pos = 16; s < count; s++) pos = await applySegment(r, pos, t, at, out);
  } catch (e) {
    if (!isFerryError(e) || !/^(DELTA_|FETCH_|CHUNK_HASH_MISMATCH)/.test(e.code)) throw e;
    out.error = e;
  }
  out.bytes = r.bytes;
  return out;
}

/**
 * Chunk-index digests of the images of class `image` that local slots hold (index kept in the
 * data directory), the booted slot's first: the bases a pack may be asked for.
 */
export async function deltaBases(
  config: SystemConfig,
  state: AgentState,
  image: string,
  exclude: Set<string>,
  booted?: SlotConfig,
): Promise<string[]> {
  const slots = [...config.slots].sort((a, b) => Number(b === booted) - Number(a === booted));
  const out: string[] = [];
  for (const slot of slots) {
    const rec = state.slots[slot.name];
    const sha = rec?.image?.chunkIndexSha256;
    if (exclude.has(slot.name) || rec?.status !== 'installed' || rec.image?.class !== image)
      continue;
    if (!sha || !SHA_RE.test(sha) || out.includes(sha)) continue;
    if (
      await access(indexPath(config.dataDir, sha)).then(
        () => true,
        () => false,
      )
    )
      out.push(sha);
  }
  return out;
}
