/**
 * Content-defined chunking: FastCDC (Xia et al., 2016/2020) with a 32-bit gear hash, normalised
 * chunking at level 2 and a min-size skip. Boundaries are part of the chunk index format; the
 * exact rule is in docs/formats/chunk-index.md and must never change for format version 1.
 */
import { FerryError } from './errors.ts';
import { GEAR_I32 } from './gear-table.ts';
import { chunkId } from './chunk-codec.ts';

/** Chunk size bounds in bytes. `avgSize` must be a power of two. */
export interface ChunkerParams {
  minSize: number;
  avgSize: number;
  maxSize: number;
}

/** casync's defaults: 16 KiB / 64 KiB / 256 KiB. */
export const DEFAULT_CHUNKER_PARAMS: ChunkerParams = Object.freeze({
  minSize: 16384,
  avgSize: 65536,
  maxSize: 262144,
});

/** The largest `maxSize` Ferry accepts (16 MiB): bounds every buffer a chunk can need. */
export const MAX_CHUNK_SIZE = 16 * 1024 * 1024;

/** The smallest `minSize` Ferry accepts. */
export const MIN_CHUNK_SIZE = 64;

/**
 * Checks chunker params and returns a clean copy. Throws USAGE if `minSize < 64`, `avgSize` is not
 * a power of two, `!(minSize <= avgSize <= maxSize)` or `maxSize > 16 MiB`.
 *
 * @example
 * const p = validateChunkerParams({ minSize: 4096, avgSize: 16384, maxSize: 65536 });
 */
export function validateChunkerParams(p: ChunkerParams): ChunkerParams {
  const { minSize, avgSize, maxSize } = p;
  const bad = (why: string): never => {
    throw new FerryError(
      'USAGE',
      `invalid chunker params ${minSize}/${avgSize}/${maxSize}: ${why}`,
    );
  };
  if (![minSize, avgSize, maxSize].every((v) => Number.isSafeInteger(v)))
    bad('sizes must be integers');
  if (minSize < MIN_CHUNK_SIZE) bad(`minSize must be at least ${MIN_CHUNK_SIZE}`);
  if ((avgSize & (avgSize - 1)) !== 0 || avgSize > MAX_CHUNK_SIZE)
    bad('avgSize must be a power of two');
  if (!(minSize <= avgSize && avgSize <= maxSize)) bad('need minSize <= avgSize <= maxSize');
  if (maxSize > MAX_CHUNK_SIZE) bad(`maxSize must be at most ${MAX_CHUNK_SIZE}`);
  return { minSize, avgSize, maxSize };
}

/**
 * The two FastCDC masks for `avgSize = 2^bits`, as unsigned 32-bit values: the top `bits + 2`
 * bits (strict, used while the chunk is shorter than avgSize) and the top `bits - 2` bits (loose).
 * The top bits are used because bit k of the gear hash depends on the last k + 1 bytes only.
 */
export function chunkerMasks(avgSize: number): { maskS: number; maskL: number } {
  const bits = Math.log2(avgSize);
  const top = (n: number): number => (n <= 0 ? 0 : (0xffffffff << (32 - n)) >>> 0);
  return { maskS: top(bits + 2), maskL: top(bits - 2) };
}

/** The gear hash after the last `scan`: a second return value without allocating. */
let scanHash = 0;

/** Records the hash and encodes "cut after byte j - 1" for `scan`. */
function hit(h: number, j: number): number {
  scanHash = h;
  return ~j;
}

/**
 * The hot loop: hashes buf[start..end) from hash `h`. Returns `~k` if the byte at k - 1 matched
 * `mask` (cut after it), else `end`; the hash is left in `scanHash`. Unrolled 16 times: besides
 * saving loop overhead, this keeps the function too large for V8 to inline into a caller compiled
 * by its mid tier (Maglev), where the loop runs 3-4 times slower (measured in Node 24).
 */
function scan(buf: Uint8Array, start: number, end: number, h: number, mask: number): number {
  const gear = GEAR_I32;
  let j = start;
  const last16 = end - 16;
  while (j <= last16) {
    h = ((h << 1) + gear[buf[j++]!]!) | 0;
    if ((h & mask) === 0) return hit(h, j);
    h = ((h << 1) + gear[buf[j++]!]!) | 0;
    if ((h & mask) === 0) return hit(h, j);
    h = ((h << 1) + gear[buf[j++]!]!) | 0;
    if ((h & mask) === 0) return hit(h, j);
    h = ((h << 1) + gear[buf[j++]!]!) | 0;
    if ((h & mask) === 0) return hit(h, j);
    h = ((h << 1) + gear[buf[j++]!]!) | 0;
    if ((h & mask) === 0) return hit(h, j);
    h = ((h << 1) + gear[buf[j++]!]!) | 0;
    if ((h & mask) === 0) return hit(h, j);
    h = ((h << 1) + gear[buf[j++]!]!) | 0;
    if ((h & mask) === 0) return hit(h, j);
    h = ((h << 1) + gear[buf[j++]!]!) | 0;
    if ((h & mask) === 0) return hit(h, j);
    h = ((h << 1) + gear[buf[j++]!]!) | 0;
    if ((h & mask) === 0) return hit(h, j);
    h = ((h << 1) + gear[buf[j++]!]!) | 0;
    if ((h & mask) === 0) return hit(h, j);
    h = ((h << 1) + gear[buf[j++]!]!) | 0;
    if ((h & mask) === 0) return hit(h, j);
    h = ((h << 1) + gear[buf[j++]!]!) | 0;
    if ((h & mask) === 0) return hit(h, j);
    h = ((h << 1) + gear[buf[j++]!]!) | 0;
    if ((h & mask) === 0) return hit(h, j);
    h = ((h << 1) + gear[buf[j++]!]!) | 0;
    if ((h & mask) === 0) return hit(h, j);
    h = ((h << 1) + gear[buf[j++]!]!) | 0;
    if ((h & mask) === 0) return hit(h, j);
    h = ((h << 1) + gear[buf[j++]!]!) | 0;
    if ((h & mask) === 0) return hit(h, j);
  }
  while (j < end) {
    h = ((h << 1) + gear[buf[j++]!]!) | 0;
    if ((h & mask) === 0) return hit(h, j);
  }
  scanHash = h;
  return end;
}

/** One chunk of a stream. `id` is the lowercase hex SHA-256 of `data`. */
export interface Chunk {
  id: string;
  offset: number;
  size: number;
  data: Buffer;
}

/**
 * Low-level boundary finder for callers that manage buffers themselves. Feed bytes with `push`,
 * which returns where chunks end inside the buffer just given; `finish` ends the input.
 *
 * @example
 * const c = new Chunker();
 * for (const buf of buffers) for (const end of c.push(buf)) cutAt(buf, end);
 * const lastLength = c.finish();
 */
export class Chunker {
  readonly params: ChunkerParams;
  readonly #maskS: number;
  readonly #maskL: number;
  /** Bytes of the current chunk consumed so far. */
  #len = 0;
  /** Gear hash of the current chunk; 0 at every chunk start. */
  #h = 0;

  constructor(params: ChunkerParams = DEFAULT_CHUNKER_PARAMS) {
    this.params = validateChunkerParams(params);
    const { maskS, maskL } = chunkerMasks(this.params.avgSize);
    this.#maskS = maskS | 0;
    this.#maskL = maskL | 0;
  }

  /** Bytes of the chunk in progress (not yet cut). */
  get pending(): number {
    return this.#len;
  }

  /**
   * Consumes `buf`. Returns the end offsets (exclusive, relative to `buf`) of every chunk that
   * ends inside it, ascending. The bytes after the last offset belong to the next chunk.
   */
  push(buf: Uint8Array): number[] {
    const { minSize, avgSize, maxSize } = this.params;
    const n = buf.length;
    const cuts: number[] = [];
    let len = this.#len;
    let h = this.#h;
    let i = 0;
    while (i < n) {
      if (len < minSize - 1) {
        // Min-size skip: the first minSize - 1 bytes of a chunk are not hashed.
        const skip = Math.min(minSize - 1 - len, n - i);
        i += skip;
        len += skip;
        continue;
      }
      // Hashing byte i makes the chunk len + 1 long: strict mask below avgSize, loose from there.
      const strict = len + 1 < avgSize;
      const mask = strict ? this.#maskS : this.#maskL;
      const end = i + Math.min(strict ? avgSize - 1 - len : maxSize - len, n - i);
      const r = scan(buf, i, end, h, mask);
      const hit = r < 0;
      const j = hit ? ~r : r;
      h = scanHash;
      len += j - i;
      i = j;
      if (hit || len === maxSize) {
        cuts.push(i);
        len = 0;
        h = 0;
      }
    }
    this.#len = len;
    this.#h = h;
    return cuts;
  }

  /** Ends the input: returns the length of the final (possibly short) chunk, 0 if none, and resets. */
  finish(): number {
    const last = this.#len;
    this.#len = 0;
    this.#h = 0;
    return last;
  }
}

/**
 * Streams the chunks of `source`. Any split of the input into buffers gives the same chunks.
 * Memory stays bounded at about maxSize plus one input buffer; input buffers may be reused by
 * the source after they are yielded, since bytes are copied out.
 *
 * @example
 * for await (const c of chunkStream(createReadStream('rootfs.img'))) store.put(c.id, c.data);
 */
export async function* chunkStream(
  source: AsyncIterable<Uint8Array>,
  params: ChunkerParams = DEFAULT_CHUNKER_PARAMS,
): AsyncGenerator<Chunk> {
  const chunker = new Chunker(params);
  const carry = Buffer.allocUnsafe(chunker.params.maxSize);
  let carryLen = 0;
  let offset = 0;
  const emit = (buf: Uint8Array, start: number, end: number): Chunk => {
    const data = Buffer.allocUnsafe(carryLen + end - start);
    carry.copy(data, 0, 0, carryLen);
    data.set(buf.subarray(start, end), carryLen);
    const chunk = { id: chunkId(data), offset, size: data.length, data };
    offset += data.length;
    carryLen = 0;
    return chunk;
  };
  for await (const buf of source) {
    let start = 0;
    for (const end of chunker.push(buf)) {
      yield emit(buf, start, end);
      start = end;
    }
    carry.set(buf.subarray(start), carryLen);
    carryLen += buf.length - start;
  }
  if (chunker.finish() > 0) yield emit(new Uint8Array(0), 0, 0);
}
