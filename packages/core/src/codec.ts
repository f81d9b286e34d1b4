/**
 * The light entry point of @ferry/core, for worker threads: chunk decoding and the hashing of
 * dm-verity leaves, with the error type. It loads these few modules only; a worker importing
 * the whole package index spends about 0.2 s of CPU starting (measured on the 2-core dev host).
 *
 * Imported as `@ferry/core/codec` (packages/core/package.json `exports`).
 *
 * @example
 * decompressChunkInto(id, frame, size, out, at); // verified, or it throws
 * const leaves = verityLeafDigests(salt, piece);
 */
export { decompressChunk, decompressChunkInto } from './chunk-codec.ts';
export { verityLeafDigests } from './verity.ts';
export { FerryError, isFerryError } from './errors.ts';
