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
