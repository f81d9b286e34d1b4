/**
 * Creating bundles: chunk each image, compress every distinct chunk once, sign the manifest,
 * and lay the file out as bundle-format.ts describes. The output is written to a temporary file,
 * fsynced, then renamed, so a crash never leaves a half bundle under the final name.
 * The same inputs, keys and creation time give a byte-identical bundle (ed25519 is deterministic
 * and the verity salt is derived from the image).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readFile, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { FerryError, withContext } from './errors.ts';
import { encodeBundleHead, encodeIndexSection } from './bundle-format.ts';
import {
  chunkStream,
  DEFAULT_CHUNKER_PARAMS,
  validateChunkerParams,
  type ChunkerParams,
} from './chunker.ts';
import { serializeChunkIndex, type ChunkIndexEntry } from './chunk-index.ts';
import { compressChunkAsync, DEFAULT_CHUNK_ZSTD_LEVEL } from './chunk-codec.ts';
import { detectImageType } from './image-type.ts';
import {
  MANIFEST_FORMAT_VERSION,
  validateManifest,
  type ImageType,
  type Manifest,
  type ManifestImage,
  type TreeRef,
} from './manifest.ts';
import type { PrivateKey } from './keys.ts';
import { serializeEnvelope, signManifest } from './signature.ts';
import { parseTree, TREE_LIMITS, treeDigest } from './tree.ts';
import { computeVerity, deriveVeritySalt } from './verity.ts';

export interface BundleImageInput {
  /** Slot class the image is for (rootfs, boot, app, ...). */
  name: string;
  path: string;
  /** Detected from the file's magic when omitted. */
  type?: ImageType;
  /**
   * A tree listing of the image's filesystem (docs/formats/tree.md), e.g. what
   * `ferry image build --tree` wrote. Parsed (a bad listing is refused) and signed as the
   * image's `tree` in the manifest.
   */
  tree?: string;
}

export interface CreateBundleOptions {
  images: BundleImageInput[];
  compatible: string;
  version: string;
  releaseCounter: number;
  keys: PrivateKey[];
  out: string;
  /** RFC 3339 UTC; default SOURCE_DATE_EPOCH if set, else now. */
  created?: string;
  description?: string;
  chunker?: ChunkerParams;
  /** zstd level for chunks, default 3. */
  compressionLevel?: number;
  onProgress?: (e: { image: string; done: number; total: number }) => void;
}

export interface CreatedBundle {
  path: string;
  size: number;
  manifest: Manifest;
  chunks: number;
  uniqueChunks: number;
  payloadBytes: number;
}

/**
 * The manifest `tree` of a listing file: parsed first (TREE_INVALID, TREE_NOT_CANONICAL,
 * TREE_TOO_LARGE), so a bundle never signs a listing no device could read.
 *
 * @example
 * const ref = await treeRefOf('rootfs.sqfs.tree'); // { sha256, size, entries }
 */
export async function treeRefOf(path: string): Promise<TreeRef> {
  const size = (await stat(path)).size;
  if (size > TREE_LIMITS.maxBytes)
    throw new FerryError(
      'TREE_TOO_LARGE',
      `${path} is ${size} bytes, over ${TREE_LIMITS.maxBytes}`,
    );
  const bytes = await readFile(path);
  const listing = parseTree(bytes);
  return { sha256: treeDigest(bytes), size: bytes.length, entries: listing.entries.length };
}

/** Creation time from SOURCE_DATE_EPOCH (reproducible builds) or the clock, second precision. */
export function defaultCreated(env: NodeJS.ProcessEnv = process.env): string {
  const epoch = env.SOURCE_DATE_EPOCH;
  const ms = epoch !== undefined && /^\d+$/.test(epoch) ? Number(epoch) * 1000 : Date.now();
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

interface PayloadWriter {
  seen: Set<string>;
  table: Array<{ id: string; length: number }>;
  queue: Array<Promise<void>>;
  fh: FileHandle;
  bytes: number;
}

/** Appends a chunk's zstd frame unless the bundle already holds it; order is kept, compression runs in parallel. */
async function addChunk(w: PayloadWriter, id: string, data: Buffer, level: number): Promise<void> {
  if (w.seen.has(id)) return;
  w.seen.add(id);
  const compressed = compressChunkAsync(data, level);
  const previous = w.queue.at(-1) ?? Promise.resolve();
  const done = (async () => {
    const frame = await compressed;
    await previous;
    await w.fh.write(frame);
    w.table.push({ id, length: frame.length });
    w.bytes += frame.length;
  })();
  w.queue.push(done);
  if (w.queue.length >= 16) await w.queue.shift();
}

async function chunkImage(
  input: BundleImageInput,
  w: PayloadWriter,
  opts: CreateBundleOptions,
  params: ChunkerParams,
) {
  const total = (await stat(input.path)).size;
  const hash = createHash('sha256');
  const entries: ChunkIndexEntry[] = [];
  let done = 0;
  for await (const c of chunkStream(
    createReadStream(input.path, { highWaterMark: 1 << 20 }),
    params,
  )) {
    hash.update(c.data);
    entries.push({ id: c.id, size: c.size });
    await addChunk(w, c.id, c.data, opts.compressionLevel ?? DEFAULT_CHUNK_ZSTD_LEVEL);
    done += c.size;
    opts.onProgress?.({ image: input.name, done, total });
  }
  if (done !== total) throw new FerryError('IO', `${input.path} changed size while being read`);
  const sha256 = hash.digest('hex');
  // The salt depends on the image alone, so rebuilding the bundle reproduces the same verity root.
  // A second pass (from the page cache, bounded memory) because the salt needs the image digest.
  const v = await computeVerity(input.path, deriveVeritySalt(sha256));
  if (v.dataBlocks !== Math.ceil(total / 4096))
    throw new FerryError('IO', `${input.path} changed size while being read`);
  const indexBytes = serializeChunkIndex({
    params,
    imageSize: total,
    imageSha256: sha256,
    chunks: entries,
  });
  const image: ManifestImage = {
    type: input.type ?? (await detectImageType(input.path)),
    size: total,
    sha256,
    chunkIndex: {
      sha256: createHash('sha256').update(indexBytes).digest('hex'),
      size: indexBytes.length,
      chunks: entries.length,
    },
    verity: {
      format: 1,
      hashAlgorithm: 'sha256',
      dataBlockSize: 4096,
      hashBlockSize: 4096,
      dataBlocks: v.dataBlocks,
      rootHash: v.rootHash,
      salt: v.salt,
      treeSize: v.treeSize,
    },
  };
  if (input.tree !== undefined)
    image.tree = await treeRefOf(input.tree).catch((e: unknown) => {
      throw withContext(`reading tree listing ${input.tree}`, e);
    });
  return { image, indexBytes, chunkCount: entries.length };
}

/**
 * Creates a signed bundle.
 * @example
 * await createBundle({ images: [{ name: 'rootfs', path: 'rootfs.sqfs' }], compatible: 'acme-gw',
 *   version: '1.2.0', releaseCounter: 12, keys: [await loadPrivateKey('release.key')], out: 'v1.2.0.fbd' });
 */
export async function createBundle(opts: CreateBundleOptions): Promise<CreatedBundle> {
  if (opts.images.length === 0) throw new FerryError('USAGE', 'a bundle needs at least one image');
  if (opts.keys.length === 0)
    throw new FerryError('USAGE', 'a bundle needs at least one signing key');
  const params = validateChunkerParams(opts.chunker ?? DEFAULT_CHUNKER_PARAMS);
  const names = opts.images.map((i) => i.name);
  if (new Set(names).size !== names.length)
    throw new FerryError('USAGE', 'an image class is given twice');
  const payloadPath = `${opts.out}.payload.tmp`;
  const outTmp = `${opts.out}.tmp`;
  const w: PayloadWriter = {
    seen: new Set(),
    table: [],
    queue: [],
    fh: await open(payloadPath, 'w'),
    bytes: 0,
  };
  try {
    const images: Record<string, ManifestImage> = {};
    const indexes = new Map<string, Buffer>();
    let chunks = 0;
    for (const input of [...opts.images].sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const r = await chunkImage(input, w, opts, params).catch((e: unknown) => {
        throw withContext(`chunking image ${input.name} (${input.path})`, e);
      });
      images[input.name] = r.image;
      indexes.set(input.name, r.indexBytes);
      chunks += r.chunkCount;
    }
    await Promise.all(w.queue);
    await w.fh.close();
    const manifest = validateManifest({
      format: MANIFEST_FORMAT_VERSION,
      compatible: opts.compatible,
      version: opts.version,
      releaseCounter: opts.releaseCounter,
      created: opts.created ?? defaultCreated(),
      ...(opts.description !== undefined ? { description: opts.description } : {}),
      images,
    });
    const envelope = serializeEnvelope(signManifest(manifest, opts.keys));
    const index = encodeIndexSection(indexes, w.table);
    const head = encodeBundleHead(envelope, index, w.bytes);
    await writeOut(outTmp, head, payloadPath);
    await rename(outTmp, opts.out);
    return {
      path: opts.out,
      size: head.length + w.bytes,
      manifest,
      chunks,
      uniqueChunks: w.table.length,
      payloadBytes: w.bytes,
    };
  } finally {
    await w.fh.close().catch(() => undefined);
    await rm(payloadPath, { force: true });
    await rm(outTmp, { force: true });
  }
}

async function writeOut(path: string, head: Buffer, payloadPath: string): Promise<void> {
  const fh = await open(path, 'w', 0o644);
  try {
    await fh.write(head);
    for await (const part of createReadStream(payloadPath, { highWaterMark: 4 << 20 }))
      await fh.write(part as Buffer);
    await fh.sync();
  } finally {
    await fh.close();
  }
}
