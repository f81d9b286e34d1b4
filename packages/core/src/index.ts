export * from './errors.ts';
export * from './canonical-json.ts';
export * from './semver.ts';
export {
  MANIFEST_FORMAT_VERSION,
  MANIFEST_LIMITS,
  validateManifest,
  parseManifest,
  serializeManifest,
  type ImageType,
  type VerityInfo,
  type ChunkIndexRef,
  type ManifestImage,
  type TreeRef,
  type Manifest,
} from './manifest.ts';
export * from './keys.ts';
export * from './keyring.ts';
export * from './signature.ts';
export * from './chunker.ts';
export * from './chunk-index.ts';
export * from './chunk-codec.ts';
export * from './chunk-store.ts';
export * from './verity.ts';
export * from './image-type.ts';
export * from './bundle-format.ts';
export * from './bundle-source.ts';
export * from './bundle-reader.ts';
export * from './bundle-writer.ts';
export * from './atomic-file.ts';
export {
  DEFAULT_DELTA_ZSTD_LEVEL,
  MAX_DELTA_WINDOW,
  deltaDictionary,
  encodeChunkDelta,
  decodeChunkDelta,
} from './delta-codec.ts';
export {
  DEFAULT_SKETCH_BITS,
  chunkSketch,
  SimilarityIndex,
  type SimilarMatch,
} from './delta-sketch.ts';
export {
  DELTA_PACK_MAGIC,
  DEFAULT_SEGMENT_BYTES,
  planDeltaPack,
  encodeDeltaPack,
  decodeDeltaPack,
  type DeltaSegment,
  type DecodedChunk,
} from './delta-pack.ts';
export * from './tree.ts';
