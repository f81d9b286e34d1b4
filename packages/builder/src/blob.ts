/**
 * Byte ranges of input files ("blobs": a rootfs tarball, an OCI blob, a member of a
 * docker-archive) and how to read them: compression sniffing, decompression with corrupt data
 * mapped to IMAGE_INPUT_INVALID, and streaming sha256 verification against a digest.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { createGunzip, createZstdDecompress } from 'node:zlib';
import { FerryError } from '@ferry/core';

/** A byte range of a file. */
export interface BlobRef {
  /** Name for messages (member name, digest or file path). */
  name: string;
  path: string;
  start: number;
  size: number;
}

/** Compression of a tar stream. */
export type Compression = 'gzip' | 'zstd' | 'none';

const MAGICS: [Buffer, string][] = [
  [Buffer.from([0x1f, 0x8b]), 'gzip'],
  [Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), 'zstd'],
  [Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a]), 'xz'],
  [Buffer.from('BZh'), 'bzip2'],
];

/** A whole file as a blob. */
export async function fileBlob(path: string): Promise<BlobRef> {
  const fh = await open(path, 'r');
  try {
    return { name: path, path, start: 0, size: (await fh.stat()).size };
  } finally {
    await fh.close();
  }
}

/** Sniffs the compression from the first bytes; xz and bzip2 are refused (IMAGE_INPUT_INVALID). */
export async function sniffCompression(ref: BlobRef): Promise<Compression> {
  const head = Buffer.alloc(Math.min(6, ref.size));
  const fh = await open(ref.path, 'r');
  try {
    await fh.read(head, 0, head.length, ref.start);
  } finally {
    await fh.close();
  }
  const hit = MAGICS.find(([m]) => head.subarray(0, m.length).equals(m))?.[1] ?? 'none';
  if (hit === 'gzip' || hit === 'zstd' || hit === 'none') return hit;
  throw new FerryError('IMAGE_INPUT_INVALID', `${ref.name} is ${hit}-compressed: use gzip or zstd`);
}

/** The raw bytes of a blob. */
export function rawStream(ref: BlobRef): Readable {
  if (ref.size === 0) return Readable.from([]);
  return createReadStream(ref.path, { start: ref.start, end: ref.start + ref.size - 1 });
}

/**
 * The decompressed bytes of a blob. Corrupt compressed data becomes IMAGE_INPUT_INVALID; read
 * errors stay IO errors.
 */
export async function* decodedStream(ref: BlobRef, comp: Compression): AsyncGenerator<Buffer> {
  const raw = rawStream(ref);
  const dec = comp === 'gzip' ? createGunzip() : comp === 'zstd' ? createZstdDecompress() : null;
  if (dec) raw.on('error', (e) => dec.destroy(e));
  const s = dec ? raw.pipe(dec) : raw;
  try {
    for await (const chunk of s) yield chunk as Buffer;
  } catch (e) {
    if (typeof (e as NodeJS.ErrnoException).syscall === 'string') throw e;
    throw new FerryError('IMAGE_INPUT_INVALID', `${ref.name}: corrupt ${comp} data`, { cause: e });
  } finally {
    raw.destroy();
    dec?.destroy();
  }
}

const DIGEST = /^sha256:([0-9a-f]{64})$/;

/** The hex part of a `sha256:` digest; IMAGE_INPUT_INVALID for anything else (other algorithms, junk). */
export function digestHex(digest: unknown): string {
  const m = typeof digest === 'string' ? DIGEST.exec(digest) : null;
  if (!m)
    throw new FerryError('IMAGE_INPUT_INVALID', `unsupported digest ${JSON.stringify(digest)}`);
  return m[1]!;
}

/**
 * Hashes a blob and compares with `digest` (and `size` when known) before anything from it is
 * used. Attack stopped: a tampered or substituted layer or manifest.
 */
export async function verifyBlob(ref: BlobRef, digest: string, size?: number): Promise<void> {
  const want = digestHex(digest);
  if (size !== undefined && size !== ref.size)
    throw new FerryError(
      'IMAGE_INPUT_INVALID',
      `${ref.name}: ${ref.size} bytes, manifest says ${size}`,
    );
  const h = createHash('sha256');
  for await (const chunk of rawStream(ref)) h.update(chunk as Buffer);
  const got = h.digest('hex');
  if (got !== want)
    throw new FerryError(
      'IMAGE_INPUT_INVALID',
      `${ref.name}: sha256 ${got} does not match ${digest}`,
    );
}

/** Reads a small blob whole, refusing it if over `max` bytes. */
export async function readSmall(ref: BlobRef, max: number): Promise<Buffer> {
  if (ref.size > max)
    throw new FerryError('IMAGE_INPUT_INVALID', `${ref.name} is ${ref.size} bytes (limit ${max})`);
  const parts: Buffer[] = [];
  for await (const chunk of rawStream(ref)) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

/** Parses JSON from a small blob; IMAGE_INPUT_INVALID if malformed or not an object. */
export async function readJsonBlob(ref: BlobRef, max = 4 << 20): Promise<Record<string, unknown>> {
  let v: unknown;
  try {
    v = JSON.parse((await readSmall(ref, max)).toString('utf8'));
  } catch (e) {
    if (e instanceof FerryError) throw e;
    throw new FerryError('IMAGE_INPUT_INVALID', `${ref.name} is not valid JSON`, { cause: e });
  }
  if (v === null || typeof v !== 'object')
    throw new FerryError('IMAGE_INPUT_INVALID', `${ref.name} is not a JSON object`);
  return v as Record<string, unknown>;
}
