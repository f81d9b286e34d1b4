/**
 * Similarity deltas between chunks: a target chunk compressed by zstd with a base chunk the device
 * already holds as a raw-content dictionary (docs/formats/delta.md). The output is one plain zstd
 * frame; decoding is bounded and verified like a chunk, so a delta can never yield bytes other
 * than the chunk the signed index names.
 */
import { constants, zstdCompressSync, zstdDecompressSync } from 'node:zlib';
import { chunkId, inspectZstdFrame } from './chunk-codec.ts';
import { FerryError } from './errors.ts';

/** zstd level for deltas: they are computed once per (base, target) and cached, so spend CPU. */
export const DEFAULT_DELTA_ZSTD_LEVEL = 19;

/** Largest dictionary + output a delta may span: zstd's default decoder window limit (2^27). */
export const MAX_DELTA_WINDOW = 1 << 27;

/**
 * The dictionary zstd sees for `base`: one zero byte, then `base`. Invariant: the dictionary is
 * always raw content. zstd would parse a buffer starting with its dictionary magic (0xEC30A437)
 * as a trained dictionary, so a base chunk crafted to start with it would decode differently.
 */
export function deltaDictionary(base: Uint8Array): Buffer {
  const dict = Buffer.allocUnsafe(base.length + 1);
  dict[0] = 0;
  dict.set(base, 1);
  return dict;
}

/** Dictionaries above this size turn on zstd long-distance matching (measured: 2.6 MB -> 0.2 MB). */
const LDM_THRESHOLD = 1 << 20;

function windowLog(bytes: number): number {
  return Math.min(27, Math.max(10, Math.ceil(Math.log2(Math.max(bytes, 1)))));
}

/**
 * Compresses `target` against `base` (any bytes, usually a similar chunk or a concatenation of
 * them). Deterministic for a given zstd, level and inputs. With an empty base it is a plain frame.
 *
 * @example
 * const delta = encodeChunkDelta(oldChunk, newChunk); // often a few hundred bytes
 */
export function encodeChunkDelta(
  base: Uint8Array,
  target: Uint8Array,
  level = DEFAULT_DELTA_ZSTD_LEVEL,
): Buffer {
  if (base.length + 1 + target.length > MAX_DELTA_WINDOW)
    throw new FerryError('USAGE', `delta base + target exceed ${MAX_DELTA_WINDOW} bytes`);
  if (!Number.isInteger(level) || level < 1 || level > 22)
    throw new FerryError('USAGE', `zstd level must be an integer in 1..22, got ${level}`);
  const size = target.length;
  return zstdCompressSync(target, {
    params: {
      [constants.ZSTD_c_compressionLevel]: level,
      // The window must reach back over the whole dictionary, or far matches are lost.
      [constants.ZSTD_c_windowLog]: windowLog(base.length + 1 + size),
      [constants.ZSTD_c_contentSizeFlag]: 1,
      [constants.ZSTD_c_checksumFlag]: 0,
      [constants.ZSTD_c_dictIDFlag]: 0,
      // Long-distance matching finds a chunk's base megabytes back in a large dictionary.
      // Invariant: a pure function of the input sizes, so the output stays deterministic.
      ...(base.length > LDM_THRESHOLD ? { [constants.ZSTD_c_enableLongDistanceMatching]: 1 } : {}),
    },
    ...(base.length > 0 ? { dictionary: deltaDictionary(base) } : {}),
    pledgedSrcSize: size,
    chunkSize: Math.max(64 * 1024, size + (size >> 7) + 4096),
  });
}

/**
 * Decodes a delta made by {@link encodeChunkDelta} against the same `base`. Throws DELTA_INVALID
 * if `delta` is not one zstd frame, declares or yields more than `maxSize` bytes (bomb) or does
 * not decode; with `id`, CHUNK_HASH_MISMATCH unless the output hashes to it.
 *
 * @example
 * const chunk = decodeChunkDelta(oldChunk, delta, index.params.maxSize, entry.id);
 */
export function decodeChunkDelta(
  base: Uint8Array,
  delta: Uint8Array,
  maxSize: number,
  id?: string,
): Buffer {
  let declared: number;
  try {
    declared = inspectZstdFrame(delta);
  } catch (e) {
    throw new FerryError('DELTA_INVALID', 'delta is not a single zstd frame', { cause: e });
  }
  // Attack stopped: a few bytes declaring (or producing) gigabytes.
  if (declared > maxSize)
    throw new FerryError('DELTA_INVALID', `delta declares ${declared} bytes > ${maxSize}`);
  let out: Buffer;
  try {
    const cap = Math.max(1, maxSize);
    out = zstdDecompressSync(delta, {
      maxOutputLength: cap,
      chunkSize: Math.max(64, Math.min(cap, 1 << 24)),
      ...(base.length > 0 ? { dictionary: deltaDictionary(base) } : {}),
    });
  } catch (e) {
    throw new FerryError('DELTA_INVALID', 'delta does not decode against its base', { cause: e });
  }
  if (declared >= 0 && out.length !== declared)
    throw new FerryError('DELTA_INVALID', `delta decodes to ${out.length} bytes, not ${declared}`);
  if (id !== undefined && chunkId(out) !== id)
    throw new FerryError('CHUNK_HASH_MISMATCH', `delta output does not hash to ${id}`);
  return out;
}
