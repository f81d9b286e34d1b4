/**
 * Chunk compression, shared by the chunk store and by bundles: one compressed chunk is exactly one
 * zstd frame (no dictionary, no skippable frames, nothing after it), and a chunk's id is the
 * SHA-256 of its uncompressed bytes (docs/formats/chunk-store.md).
 */
import { createHash } from 'node:crypto';
import { constants, zstdCompress, zstdCompressSync, zstdDecompressSync } from 'node:zlib';
import { promisify } from 'node:util';
import { FerryError } from './errors.ts';
import { ZstdDecoder } from './zstd-decoder.ts';

/** The zstd level Ferry compresses chunks with unless told otherwise. */
export const DEFAULT_CHUNK_ZSTD_LEVEL = 3;

const ZSTD_MAGIC = 0xfd2fb528;
/** Largest block a zstd frame may hold (RFC 8878 Block_Maximum_Size). */
const ZSTD_BLOCK_MAX = 128 * 1024;
const zstdCompressAsync = promisify(zstdCompress);
/** This thread's reused zstd context for `decompressChunkInto` (made on first use; null: none). */
let decoder: ZstdDecoder | null | undefined;

/**
 * Lowercase hex SHA-256 of `data`: the id of a chunk.
 *
 * @example
 * chunkId(Buffer.from('abc')); // 'ba7816bf...'
 */
export function chunkId(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

function zstdOptions(level: number, size: number) {
  if (!Number.isInteger(level) || level < 1 || level > 22)
    throw new FerryError('USAGE', `zstd level must be an integer in 1..22, got ${level}`);
  // Single-threaded, no checksum (the sha256 id covers it), and the size pledged up front: without
  // it the async path streams, omits the content size and picks other parameters, so sync and
  // async output would differ (measured in Node 24). With it, same input + level = same frame.
  return {
    params: {
      [constants.ZSTD_c_compressionLevel]: level,
      [constants.ZSTD_c_contentSizeFlag]: 1,
      [constants.ZSTD_c_checksumFlag]: 0,
    },
    pledgedSrcSize: size,
    // One output buffer larger than any frame for this input (zstd's compress bound plus slack).
    // Node's zstd otherwise appends an empty 9-byte frame whenever the output ends exactly on a
    // buffer boundary (a multiple of the default 16 KiB), and a chunk must be exactly one frame.
    chunkSize: Math.max(64 * 1024, size + (size >> 7) + 4096),
  };
}

/**
 * Compresses one chunk into one zstd frame (default level 3). Deterministic for a given zstd.
 *
 * @example
 * const frame = compressChunk(chunk.data);
 */
export function compressChunk(data: Uint8Array, level = DEFAULT_CHUNK_ZSTD_LEVEL): Buffer {
  return zstdCompressSync(data, zstdOptions(level, data.length));
}

/** Like `compressChunk` (byte-identical output), but on the libuv pool so callers can overlap work. */
export async function compressChunkAsync(
  data: Uint8Array,
  level = DEFAULT_CHUNK_ZSTD_LEVEL,
): Promise<Buffer> {
  return zstdCompressAsync(data, zstdOptions(level, data.length));
}

/** A block of a zstd frame: its type (0 raw, 1 RLE, 2 compressed), payload offset and sizes. */
export interface ZstdBlock {
  type: 0 | 1 | 2;
  /** Offset of the block's payload in the frame. */
  start: number;
  /** Bytes of payload in the frame (1 for an RLE block). */
  length: number;
  /** Bytes the block decodes to (raw and RLE; for compressed blocks, its compressed size). */
  size: number;
}

/**
 * Walks the zstd frame structure (RFC 8878 section 3.1.1) without decompressing: the declared
 * content size (-1 if none) and the blocks. Throws CHUNK_CORRUPT unless `buf` is exactly one
 * zstd frame with no dictionary and nothing after it.
 */
export function zstdFrameLayout(buf: Uint8Array): { contentSize: number; blocks: ZstdBlock[] } {
  const corrupt = (why: string): never => {
    throw new FerryError('CHUNK_CORRUPT', `not a single zstd frame: ${why}`);
  };
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (buf.length < 6 || view.getUint32(0, true) !== ZSTD_MAGIC) corrupt('bad magic');
  const fhd = buf[4]!;
  const fcsFlag = fhd >> 6;
  const singleSegment = (fhd >> 5) & 1;
  if (fhd & 0x08) corrupt('reserved header bit set');
  if (fhd & 0x03) corrupt('dictionary frames are not allowed');
  const fcsBytes = [singleSegment, 2, 4, 8][fcsFlag]!;
  let pos = 5 + (singleSegment ? 0 : 1);
  if (pos + fcsBytes > buf.length) corrupt('truncated header');
  let contentSize = -1;
  if (fcsBytes === 1) contentSize = buf[pos]!;
  else if (fcsBytes === 2) contentSize = view.getUint16(pos, true) + 256;
  else if (fcsBytes === 4) contentSize = view.getUint32(pos, true);
  else if (fcsBytes === 8) contentSize = Number(view.getBigUint64(pos, true));
  pos += fcsBytes;
  const blocks: ZstdBlock[] = [];
  for (;;) {
    if (pos + 3 > buf.length) corrupt('truncated block header');
    const bh = buf[pos]! | (buf[pos + 1]! << 8) | (buf[pos + 2]! << 16);
    const type = (bh >> 1) & 3;
    if (type === 3) corrupt('reserved block type');
    const size = bh >>> 3;
    const length = type === 1 ? 1 : size;
    blocks.push({ type: type as 0 | 1 | 2, start: pos + 3, length, size });
    pos += 3 + length;
    if (bh & 1) break;
  }
  if (fhd & 0x04) pos += 4;
  if (pos !== buf.length) corrupt(pos > buf.length ? 'truncated' : 'bytes after the frame');
  return { contentSize, blocks };
}

/**
 * Walks the zstd frame structure without decompressing. Returns the declared content size, or -1
 * if the header does not declare one. Throws CHUNK_CORRUPT unless `buf` is exactly one zstd frame
 * with no dictionary and nothing after it: that rule keeps one chunk's compressed form free of
 * smuggled bytes.
 */
export function inspectZstdFrame(buf: Uint8Array): number {
  return zstdFrameLayout(buf).contentSize;
}

/**
 * Decodes one chunk straight into `out` at `at` (exactly `size` bytes) and verifies it there.
 * Frames that zstd stored without compression (raw and RLE blocks only: already-compressed
 * filesystem data) are copied block by block, with no decoder; others are decoded in place by
 * this thread's reused zstd context (`ZstdDecoder`; `decompressChunk` and a copy where Node's
 * zlib internals differ). Same checks and error codes as `decompressChunk`; on a throw, `out` may
 * hold unverified bytes in [at, at + size) and must not be used.
 *
 * @example
 * const out = Buffer.allocUnsafe(size);
 * decompressChunkInto(id, frame, size, out, 0);
 */
export function decompressChunkInto(
  id: string,
  frame: Uint8Array,
  size: number,
  out: Buffer,
  at: number,
): void {
  if (at < 0 || at + size > out.length)
    throw new FerryError('INTERNAL', `no room for chunk ${id} at ${at} of ${out.length}`);
  const { contentSize, blocks } = zstdFrameLayout(frame);
  // Attack stopped: a frame declaring more than its chunk (decompression bomb).
  if (contentSize > size)
    throw new FerryError('CHUNK_CORRUPT', `chunk ${id} declares ${contentSize} bytes > ${size}`);
  if (blocks.some((b) => b.type === 2)) {
    if (decoder === undefined || decoder?.broken) decoder = ZstdDecoder.create() ?? null;
    if (!decoder) {
      const data = decompressChunk(id, frame, size);
      if (data.length !== size)
        throw new FerryError(
          'CHUNK_HASH_MISMATCH',
          `chunk ${id} is ${data.length} bytes, the index says ${size}`,
        );
      data.copy(out, at);
      return;
    }
    decoder.decode(id, frame, size, out, at);
    if (contentSize >= 0 && contentSize !== size)
      throw new FerryError('CHUNK_CORRUPT', `chunk ${id} decompresses to ${size} bytes`);
    const actual = chunkId(out.subarray(at, at + size));
    if (actual !== id)
      throw new FerryError('CHUNK_HASH_MISMATCH', `chunk ${id} hashes to ${actual}`);
    return;
  }
  let n = 0;
  for (const b of blocks) {
    // Bounded before any byte is copied: a stored frame never writes past its chunk.
    if (b.size > ZSTD_BLOCK_MAX || n + b.size > size)
      throw new FerryError('CHUNK_CORRUPT', `chunk ${id} decodes past ${size} bytes`);
    if (b.type === 0) out.set(frame.subarray(b.start, b.start + b.size), at + n);
    else out.fill(frame[b.start]!, at + n, at + n + b.size);
    n += b.size;
  }
  if (contentSize >= 0 && n !== contentSize)
    throw new FerryError('CHUNK_CORRUPT', `chunk ${id} decompresses to ${n} bytes`);
  if (n !== size)
    throw new FerryError(
      'CHUNK_HASH_MISMATCH',
      `chunk ${id} is ${n} bytes, the index says ${size}`,
    );
  const actual = chunkId(out.subarray(at, at + size));
  if (actual !== id) throw new FerryError('CHUNK_HASH_MISMATCH', `chunk ${id} hashes to ${actual}`);
}

/**
 * Decompresses one chunk with a hard output cap and verifies it. Throws CHUNK_CORRUPT if the input
 * is not a single zstd frame or would decompress to more than `maxSize` bytes (decompression bomb),
 * CHUNK_HASH_MISMATCH if the output does not hash to `id`.
 *
 * @example
 * const data = decompressChunk(entry.id, frame, index.params.maxSize);
 */
export function decompressChunk(id: string, compressed: Uint8Array, maxSize: number): Buffer {
  const declared = inspectZstdFrame(compressed);
  // Attack stopped: a frame declaring (or producing) gigabytes from a few bytes.
  if (declared > maxSize)
    throw new FerryError('CHUNK_CORRUPT', `chunk ${id} declares ${declared} bytes > ${maxSize}`);
  let data: Buffer;
  try {
    // One output buffer of the chunk's size: no growth and no concatenation (+16% measured).
    const cap = Math.max(1, maxSize);
    data = zstdDecompressSync(compressed, { maxOutputLength: cap, chunkSize: Math.max(64, cap) });
  } catch (e) {
    throw new FerryError('CHUNK_CORRUPT', `chunk ${id} does not decompress`, { cause: e });
  }
  if (data.length > maxSize || (declared >= 0 && data.length !== declared))
    throw new FerryError('CHUNK_CORRUPT', `chunk ${id} decompresses to ${data.length} bytes`);
  const actual = chunkId(data);
  if (actual !== id) throw new FerryError('CHUNK_HASH_MISMATCH', `chunk ${id} hashes to ${actual}`);
  return data;
}
