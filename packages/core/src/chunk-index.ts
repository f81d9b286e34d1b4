/**
 * The chunk index: which chunks, in order, make up an image. A compact little-endian binary format,
 * laid out byte by byte in docs/formats/chunk-index.md. Parsing treats the bytes as untrusted:
 * every field is bounded and checked before use, and a valid index has exactly one encoding.
 */
import { FerryError, isFerryError } from './errors.ts';
import { validateChunkerParams, type ChunkerParams } from './chunker.ts';

/** One chunk of an image: hex SHA-256 of its bytes and its length. */
export interface ChunkIndexEntry {
  id: string;
  size: number;
}

/** An image described as a sequence of chunks cut with `params`. */
export interface ChunkIndex {
  params: ChunkerParams;
  imageSize: number;
  imageSha256: string;
  chunks: ChunkIndexEntry[];
}

/** The format version this Ferry writes and reads. */
export const CHUNK_INDEX_FORMAT_VERSION = 1;

/** The first 8 bytes of every chunk index: ASCII "FERRYCIX". */
export const CHUNK_INDEX_MAGIC = Buffer.from('FERRYCIX', 'ascii');

/** Default bound on the chunk count (4 Mi chunks: 256 GiB at 64 KiB average). */
export const DEFAULT_MAX_INDEX_CHUNKS = 4_194_304;

const HEADER_SIZE = 72;
const ENTRY_SIZE = 36;
const HEX64 = /^[0-9a-f]{64}$/;

function invalid(why: string): never {
  throw new FerryError('CHUNK_INDEX_INVALID', `invalid chunk index: ${why}`);
}

function checkParams(p: ChunkerParams): ChunkerParams {
  try {
    return validateChunkerParams(p);
  } catch (e) {
    if (isFerryError(e, 'USAGE')) invalid(e.message);
    throw e;
  }
}

/** Checks the invariants shared by serialize and parse: sizes within params, sum, count. */
function checkChunks(index: ChunkIndex, maxChunks: number): void {
  const { minSize, maxSize } = index.params;
  const n = index.chunks.length;
  if (n > maxChunks) invalid(`${n} chunks exceed the limit of ${maxChunks}`);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const size = index.chunks[i]!.size;
    // Only the last chunk may be short: the input ended before minSize.
    const lo = i === n - 1 ? 1 : minSize;
    if (!Number.isInteger(size) || size < lo || size > maxSize)
      invalid(`chunk ${i} has size ${size} outside ${lo}..${maxSize}`);
    sum += size;
  }
  if (sum !== index.imageSize)
    invalid(`chunk sizes sum to ${sum}, image size is ${index.imageSize}`);
}

/**
 * Encodes an index. Throws CHUNK_INDEX_INVALID if it breaks any rule `parseChunkIndex` enforces,
 * so whatever this writes parses back.
 *
 * @example
 * await writeFile('rootfs.fcix', serializeChunkIndex(index));
 */
export function serializeChunkIndex(index: ChunkIndex): Buffer {
  const params = checkParams(index.params);
  if (!Number.isSafeInteger(index.imageSize) || index.imageSize < 0)
    invalid(`image size ${index.imageSize}`);
  if (!HEX64.test(index.imageSha256)) invalid('image sha256 is not 64 lowercase hex digits');
  checkChunks({ ...index, params }, 0xffffffff);
  const n = index.chunks.length;
  const out = Buffer.alloc(HEADER_SIZE + ENTRY_SIZE * n);
  CHUNK_INDEX_MAGIC.copy(out, 0);
  out.writeUInt16LE(CHUNK_INDEX_FORMAT_VERSION, 8);
  out.writeUInt32LE(n, 12);
  out.writeUInt32LE(params.minSize, 16);
  out.writeUInt32LE(params.avgSize, 20);
  out.writeUInt32LE(params.maxSize, 24);
  out.writeBigUInt64LE(BigInt(index.imageSize), 32);
  out.write(index.imageSha256, 40, 'hex');
  let pos = HEADER_SIZE;
  for (const { id, size } of index.chunks) {
    if (!HEX64.test(id)) invalid(`chunk id ${JSON.stringify(id)} is not 64 lowercase hex digits`);
    out.write(id, pos, 'hex');
    out.writeUInt32LE(size, pos + 32);
    pos += ENTRY_SIZE;
  }
  return out;
}

/**
 * Decodes an untrusted index. Throws CHUNK_INDEX_INVALID (bad magic, wrong length, trailing bytes,
 * non-zero reserved fields, bad params, chunk sizes outside params except a short last chunk,
 * sizes not summing to imageSize, more than `limits.maxChunks` chunks) or
 * CHUNK_INDEX_FORMAT_VERSION.
 *
 * @example
 * const index = parseChunkIndex(await readFile('rootfs.fcix'));
 */
export function parseChunkIndex(
  bytes: Uint8Array,
  limits: { maxChunks?: number } = {},
): ChunkIndex {
  const maxChunks = limits.maxChunks ?? DEFAULT_MAX_INDEX_CHUNKS;
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < 10 || !buf.subarray(0, 8).equals(CHUNK_INDEX_MAGIC)) invalid('bad magic');
  const version = buf.readUInt16LE(8);
  if (version !== CHUNK_INDEX_FORMAT_VERSION)
    throw new FerryError('CHUNK_INDEX_FORMAT_VERSION', `chunk index format version ${version}`);
  if (buf.length < HEADER_SIZE) invalid(`${buf.length} bytes is shorter than the header`);
  if (buf.readUInt16LE(10) !== 0 || buf.readUInt32LE(28) !== 0) invalid('reserved bytes not zero');
  const n = buf.readUInt32LE(12);
  // Attack stopped: a huge declared count making us allocate before the length check.
  if (n > maxChunks) invalid(`${n} chunks exceed the limit of ${maxChunks}`);
  if (buf.length !== HEADER_SIZE + ENTRY_SIZE * n)
    invalid(`${buf.length} bytes, ${n} chunks need ${HEADER_SIZE + ENTRY_SIZE * n}`);
  const params = checkParams({
    minSize: buf.readUInt32LE(16),
    avgSize: buf.readUInt32LE(20),
    maxSize: buf.readUInt32LE(24),
  });
  const imageSize = buf.readBigUInt64LE(32);
  if (imageSize > BigInt(Number.MAX_SAFE_INTEGER)) invalid(`image size ${imageSize} too large`);
  const chunks: ChunkIndexEntry[] = new Array<ChunkIndexEntry>(n);
  for (let i = 0, pos = HEADER_SIZE; i < n; i++, pos += ENTRY_SIZE)
    chunks[i] = { id: buf.toString('hex', pos, pos + 32), size: buf.readUInt32LE(pos + 32) };
  const index: ChunkIndex = {
    params,
    imageSize: Number(imageSize),
    imageSha256: buf.toString('hex', 40, 72),
    chunks,
  };
  checkChunks(index, maxChunks);
  return index;
}

/**
 * The start offset of each chunk in the image.
 *
 * @example
 * chunkOffsets(index)[3]; // where chunk 3 begins
 */
export function chunkOffsets(index: ChunkIndex): number[] {
  const offsets = new Array<number>(index.chunks.length);
  let pos = 0;
  for (let i = 0; i < index.chunks.length; i++) {
    offsets[i] = pos;
    pos += index.chunks[i]!.size;
  }
  return offsets;
}
