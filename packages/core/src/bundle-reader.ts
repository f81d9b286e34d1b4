/**
 * Reading and verifying bundles. `openBundle` checks everything except the chunk bytes: header,
 * signatures (before the manifest is trusted), chunk indexes against the signed digests, and the
 * payload table. `imageChunks` then yields an image's chunks in order, each verified against its id
 * before the caller sees a byte: the one path that `verifyBundle` and installs share.
 */
import { createHash } from 'node:crypto';
import { FerryError } from './errors.ts';
import {
  BUNDLE_HEADER_SIZE,
  decodeHeader,
  decodeIndexSection,
  type BundleHeader,
  type PayloadEntry,
} from './bundle-format.ts';
import type { ByteSource } from './bundle-source.ts';
import { parseChunkIndex, type ChunkIndex } from './chunk-index.ts';
import { decompressChunk } from './chunk-codec.ts';
import { validateManifest, type Manifest } from './manifest.ts';
import type { Keyring } from './keyring.ts';
import { parseEnvelope, verifyManifestEnvelope, type SignedEnvelope } from './signature.ts';
import { VerityHasher } from './verity.ts';

export interface BundleImage {
  name: string;
  index: ChunkIndex;
}

export interface OpenedBundle {
  source: ByteSource;
  header: BundleHeader;
  envelope: SignedEnvelope<unknown>;
  manifest: Manifest;
  /** Key ids whose signatures verified; empty when opened without a keyring (info only). */
  verifiedBy: string[];
  images: Map<string, BundleImage>;
  payload: Map<string, PayloadEntry>;
}

export interface OpenBundleOptions {
  /** Verify signatures against this keyring. Without one the manifest is only schema-checked. */
  keyring?: Keyring;
}

function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

/**
 * Opens a bundle and checks its structure and (with a keyring) its signatures.
 * @example
 * const b = await openBundle(new FileSource('v2.fbd'), { keyring: await loadKeyring('keys/') });
 * console.log(b.manifest.version);
 */
export async function openBundle(
  source: ByteSource,
  opts: OpenBundleOptions = {},
): Promise<OpenedBundle> {
  const size = await source.size();
  const header = decodeHeader(await source.read(0, Math.min(size, BUNDLE_HEADER_SIZE)), size);
  const envelope = parseEnvelope(await source.read(BUNDLE_HEADER_SIZE, header.envelopeLength));
  let manifest: Manifest;
  let verifiedBy: string[] = [];
  if (opts.keyring) {
    // Signatures first: nothing in an unverified manifest is acted on (arbitrary-software attack).
    const v = verifyManifestEnvelope(envelope, opts.keyring);
    manifest = v.manifest;
    verifiedBy = v.keyIds;
  } else {
    manifest = validateManifest(envelope.signed);
  }
  const indexStart = BUNDLE_HEADER_SIZE + header.envelopeLength;
  const rest = await source.read(indexStart, header.payloadOffset - indexStart);
  const section = decodeIndexSection(rest.subarray(0, header.indexLength), header.payloadLength);
  if (rest.subarray(header.indexLength).some((byte) => byte !== 0))
    throw new FerryError('BUNDLE_LAYOUT', 'padding before the payload is not zero');
  const images = checkImages(manifest, section.chunkIndexes);
  const payload = new Map(section.payload.map((p) => [p.id, p]));
  checkPayloadCoverage(images, payload);
  return { source, header, envelope, manifest, verifiedBy, images, payload };
}

function checkImages(manifest: Manifest, indexes: Map<string, Buffer>): Map<string, BundleImage> {
  const names = Object.keys(manifest.images).sort();
  const stored = [...indexes.keys()].sort();
  if (names.join('\0') !== stored.join('\0'))
    throw new FerryError(
      'BUNDLE_LAYOUT',
      `bundle holds images [${stored.join(', ')}], the manifest lists [${names.join(', ')}]`,
    );
  const images = new Map<string, BundleImage>();
  for (const name of names) {
    const ref = manifest.images[name]!;
    const bytes = indexes.get(name)!;
    // Mix-and-match guard: the chunk index must be the one the signed manifest names.
    if (bytes.length !== ref.chunkIndex.size || sha256(bytes) !== ref.chunkIndex.sha256)
      throw new FerryError(
        'CHUNK_INDEX_MISMATCH',
        `chunk index of ${name} does not match the signed digest`,
      );
    const index = parseChunkIndex(bytes);
    if (
      index.imageSize !== ref.size ||
      index.imageSha256 !== ref.sha256 ||
      index.chunks.length !== ref.chunkIndex.chunks
    )
      throw new FerryError(
        'CHUNK_INDEX_MISMATCH',
        `chunk index of ${name} describes another image than the manifest`,
      );
    images.set(name, { name, index });
  }
  return images;
}

function checkPayloadCoverage(
  images: Map<string, BundleImage>,
  payload: Map<string, PayloadEntry>,
): void {
  const needed = new Set<string>();
  for (const img of images.values()) for (const c of img.index.chunks) needed.add(c.id);
  for (const id of needed)
    if (!payload.has(id))
      throw new FerryError('BUNDLE_LAYOUT', `chunk ${id} is missing from the payload table`);
  if (payload.size !== needed.size)
    throw new FerryError(
      'BUNDLE_LAYOUT',
      `payload holds ${payload.size - needed.size} chunks no image uses`,
    );
}

/** Reads one chunk's compressed zstd frame from the payload, unverified (see readBundleChunk). */
export async function readBundleFrame(b: OpenedBundle, id: string): Promise<Buffer> {
  const entry = b.payload.get(id);
  if (!entry) throw new FerryError('CHUNK_MISSING', `chunk ${id} is not in ${b.source.name}`);
  return b.source.read(b.header.payloadOffset + entry.offset, entry.length);
}

/** Reads one chunk from the payload and verifies it against its id (CHUNK_HASH_MISMATCH, CHUNK_CORRUPT). */
export async function readBundleChunk(b: OpenedBundle, id: string, size: number): Promise<Buffer> {
  const data = decompressChunk(id, await readBundleFrame(b, id), size);
  if (data.length !== size)
    throw new FerryError(
      'CHUNK_HASH_MISMATCH',
      `chunk ${id} is ${data.length} bytes, the index says ${size}`,
    );
  return data;
}

/**
 * Yields the chunks of one image in order, each verified before it is yielded. Reads run a few
 * chunks ahead so a slow source overlaps with the consumer.
 */
export async function* imageChunks(
  b: OpenedBundle,
  name: string,
  readAhead = 8,
): AsyncGenerator<Buffer> {
  const image = b.images.get(name);
  if (!image) throw new FerryError('USAGE', `bundle has no image ${name}`);
  const chunks = image.index.chunks;
  const pending: Array<Promise<Buffer>> = [];
  let next = 0;
  while (next < chunks.length || pending.length > 0) {
    while (next < chunks.length && pending.length < readAhead) {
      const c = chunks[next++]!;
      const p = readBundleChunk(b, c.id, c.size);
      void p.catch(() => undefined); // surfaced when awaited in order below
      pending.push(p);
    }
    yield await pending.shift()!;
  }
}

export interface ImageVerification {
  name: string;
  size: number;
  sha256: string;
  verityRootHash: string;
  chunks: number;
}

export interface BundleVerification {
  manifest: Manifest;
  keyIds: string[];
  images: ImageVerification[];
}

export type VerifyProgress = (e: { image: string; done: number; total: number }) => void;

/**
 * Full verification: signatures and threshold, structure, every chunk, every image's SHA-256 and
 * dm-verity root. Resolves only if all of it checks out.
 */
export async function verifyBundle(
  source: ByteSource,
  keyring: Keyring,
  onProgress?: VerifyProgress,
): Promise<BundleVerification> {
  const b = await openBundle(source, { keyring });
  const images: ImageVerification[] = [];
  for (const [name, image] of b.images) {
    const ref = b.manifest.images[name]!;
    const hash = createHash('sha256');
    const verity = new VerityHasher(Buffer.from(ref.verity.salt, 'hex'));
    let done = 0;
    for await (const data of imageChunks(b, name)) {
      hash.update(data);
      verity.update(data);
      done += data.length;
      onProgress?.({ image: name, done, total: image.index.imageSize });
    }
    const digest = hash.digest('hex');
    if (digest !== ref.sha256)
      throw new FerryError(
        'IMAGE_HASH_MISMATCH',
        `image ${name} hashes to ${digest}, signed ${ref.sha256}`,
      );
    const v = verity.finish();
    if (
      v.rootHash !== ref.verity.rootHash ||
      v.treeSize !== ref.verity.treeSize ||
      v.dataBlocks !== ref.verity.dataBlocks
    )
      throw new FerryError(
        'VERITY_MISMATCH',
        `image ${name} has verity root ${v.rootHash}, signed ${ref.verity.rootHash}`,
      );
    images.push({
      name,
      size: done,
      sha256: digest,
      verityRootHash: v.rootHash,
      chunks: image.index.chunks.length,
    });
  }
  return { manifest: b.manifest, keyIds: b.verifiedBy, images };
}
