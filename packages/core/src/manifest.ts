/**
 * The release manifest: what a bundle installs, for which devices, at which version. Stored and
 * signed as canonical JSON; the format is specified in docs/formats/manifest.md.
 */
import { canonicalBytes, parseCanonicalJson, type JsonLimits } from './canonical-json.ts';
import { FerryError } from './errors.ts';
import { isSemver } from './semver.ts';

export { compareSemver } from './semver.ts';

/** The only manifest format this Ferry reads and writes. */
export const MANIFEST_FORMAT_VERSION = 1;

/** Bounds for parsing an untrusted manifest. */
export const MANIFEST_LIMITS: JsonLimits = Object.freeze({ maxBytes: 1024 * 1024, maxDepth: 16 });

/** Filesystem image kinds a slot can receive. */
export type ImageType = 'squashfs' | 'erofs' | 'raw' | 'tar';

/** dm-verity parameters of an image (veritysetup format 1, superblock-less). */
export interface VerityInfo {
  format: 1;
  hashAlgorithm: 'sha256';
  dataBlockSize: 4096;
  hashBlockSize: 4096;
  dataBlocks: number;
  /** 64 lowercase hex digits. */
  rootHash: string;
  /** Lowercase hex, 0..256 bytes. */
  salt: string;
  treeSize: number;
}

/** Digest and shape of the chunk index that lists the image's chunks. */
export interface ChunkIndexRef {
  sha256: string;
  size: number;
  chunks: number;
}

/**
 * Digest and shape of the tree listing (docs/formats/tree.md) of the filesystem inside the image:
 * what a device checks a deployment checked out from file objects against.
 */
export interface TreeRef {
  /** SHA-256 of the listing bytes: the tree digest. */
  sha256: string;
  /** Length of the listing in bytes. */
  size: number;
  /** Number of entries the listing holds (its header's `entries`). */
  entries: number;
}

/** One image, installed into slots of one class. */
export interface ManifestImage {
  type: ImageType;
  size: number;
  sha256: string;
  chunkIndex: ChunkIndexRef;
  verity: VerityInfo;
  /** Optional: the tree listing of the image's filesystem, for deployments. */
  tree?: TreeRef;
  [extra: string]: unknown;
}

/** A release manifest. Unknown fields are preserved at every level and covered by signatures. */
export interface Manifest {
  format: 1;
  compatible: string;
  /** SemVer 2.0.0. */
  version: string;
  /** Monotonic counter for anti-rollback; a safe integer >= 0. */
  releaseCounter: number;
  /** RFC 3339 UTC, e.g. 2026-11-22T10:00:00Z. */
  created: string;
  description?: string;
  /** Slot class -> image; at least one. */
  images: Record<string, ManifestImage>;
  [extra: string]: unknown;
}

const IMAGE_TYPES: readonly string[] = ['squashfs', 'erofs', 'raw', 'tar'];
const SLOT_CLASS_RE = /^[a-z][a-z0-9_-]{0,31}$/;
const COMPATIBLE_RE = /^[A-Za-z0-9][A-Za-z0-9._+:@/-]{0,127}$/;
const SHA256_RE = /^[0-9a-f]{64}$/;
const SALT_RE = /^(?:[0-9a-f]{2}){0,256}$/;
const CREATED_RE = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d{1,9})?Z$/;
const MAX_IMAGES = 64;
const MAX_DESCRIPTION = 4096;

type Obj = Record<string, unknown>;

function fail(path: string, expected: string): never {
  throw new FerryError('MANIFEST_SCHEMA', `${path}: expected ${expected}`);
}

const join = (path: string, key: string): string =>
  /^[A-Za-z_][A-Za-z0-9_-]*$/.test(key)
    ? path
      ? `${path}.${key}`
      : key
    : `${path}[${JSON.stringify(key)}]`;

function object(v: unknown, path: string): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(path || '$', 'an object');
  return v as Obj;
}

function field(o: Obj, key: string, path: string): { v: unknown; p: string } {
  const p = join(path, key);
  if (!Object.hasOwn(o, key)) fail(p, 'a value (field is missing)');
  return { v: o[key], p };
}

function matching(o: Obj, key: string, path: string, re: RegExp, what: string): void {
  const { v, p } = field(o, key, path);
  if (typeof v !== 'string' || !re.test(v)) fail(p, what);
}

function count(o: Obj, key: string, path: string): void {
  const { v, p } = field(o, key, path);
  if (!Number.isSafeInteger(v) || (v as number) < 0) fail(p, 'a safe integer >= 0');
}

function constant(o: Obj, key: string, path: string, want: unknown): void {
  const { v, p } = field(o, key, path);
  if (v !== want) fail(p, JSON.stringify(want));
}

function validCreated(s: unknown): boolean {
  const m = typeof s === 'string' ? CREATED_RE.exec(s) : null;
  if (!m) return false;
  const [y, mo, d, h, mi, sec] = m.slice(1, 7).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const t = new Date(Date.UTC(y, mo - 1, d, h, mi, sec));
  // Date.UTC rolls over (Feb 30 -> Mar 2); a round trip catches impossible dates and times.
  return (
    t.getUTCFullYear() === y &&
    t.getUTCMonth() === mo - 1 &&
    t.getUTCDate() === d &&
    t.getUTCHours() === h &&
    t.getUTCMinutes() === mi &&
    t.getUTCSeconds() === sec
  );
}

function validateVerity(v: unknown, path: string): void {
  const o = object(v, path);
  constant(o, 'format', path, 1);
  constant(o, 'hashAlgorithm', path, 'sha256');
  constant(o, 'dataBlockSize', path, 4096);
  constant(o, 'hashBlockSize', path, 4096);
  count(o, 'dataBlocks', path);
  matching(o, 'rootHash', path, SHA256_RE, '64 lowercase hex digits');
  matching(o, 'salt', path, SALT_RE, 'lowercase hex of 0 to 256 bytes');
  count(o, 'treeSize', path);
}

function validateImage(v: unknown, path: string): void {
  const o = object(v, path);
  const type = field(o, 'type', path);
  if (typeof type.v !== 'string' || !IMAGE_TYPES.includes(type.v))
    fail(type.p, `one of ${IMAGE_TYPES.join(', ')}`);
  count(o, 'size', path);
  matching(o, 'sha256', path, SHA256_RE, '64 lowercase hex digits');
  const ci = object(field(o, 'chunkIndex', path).v, join(path, 'chunkIndex'));
  matching(ci, 'sha256', join(path, 'chunkIndex'), SHA256_RE, '64 lowercase hex digits');
  count(ci, 'size', join(path, 'chunkIndex'));
  count(ci, 'chunks', join(path, 'chunkIndex'));
  validateVerity(field(o, 'verity', path).v, join(path, 'verity'));
  if (Object.hasOwn(o, 'tree')) validateTree(o.tree, join(path, 'tree'));
}

function validateTree(v: unknown, path: string): void {
  const o = object(v, path);
  matching(o, 'sha256', path, SHA256_RE, '64 lowercase hex digits');
  count(o, 'size', path);
  count(o, 'entries', path);
}

function validateImages(v: unknown): void {
  const images = object(v, 'images');
  const names = Object.keys(images);
  if (names.length === 0 || names.length > MAX_IMAGES)
    fail('images', `1 to ${MAX_IMAGES} slot classes`);
  for (const name of names) {
    const p = join('images', name);
    if (!SLOT_CLASS_RE.test(name)) fail(p, 'a slot class name matching ^[a-z][a-z0-9_-]{0,31}$');
    validateImage(images[name], p);
  }
}

/**
 * Checks `value` against the manifest schema and returns it typed, unknown fields untouched.
 * Throws MANIFEST_FORMAT_VERSION if `format` is present but not 1, MANIFEST_SCHEMA (naming the
 * JSON path) for anything else.
 *
 * @example
 * const m = validateManifest(JSON.parse(text)); // m.images.rootfs.sha256 is checked hex
 */
export function validateManifest(value: unknown): Manifest {
  const o = object(value, '');
  if (Object.hasOwn(o, 'format') && o.format !== MANIFEST_FORMAT_VERSION)
    throw new FerryError(
      'MANIFEST_FORMAT_VERSION',
      `manifest format ${JSON.stringify(o.format)?.slice(0, 40)} is not ${MANIFEST_FORMAT_VERSION}`,
    );
  constant(o, 'format', '', MANIFEST_FORMAT_VERSION);
  matching(o, 'compatible', '', COMPATIBLE_RE, '1-128 characters of [A-Za-z0-9._+:@/-]');
  const version = field(o, 'version', '');
  if (!isSemver(version.v)) fail(version.p, 'a SemVer 2.0.0 version');
  count(o, 'releaseCounter', '');
  const created = field(o, 'created', '');
  if (!validCreated(created.v)) fail(created.p, 'an RFC 3339 UTC time like 2026-11-22T10:00:00Z');
  if (Object.hasOwn(o, 'description')) {
    const d = o.description;
    if (typeof d !== 'string' || d.length > MAX_DESCRIPTION)
      fail('description', `a string of at most ${MAX_DESCRIPTION} characters`);
  }
  validateImages(field(o, 'images', '').v);
  return o as Manifest;
}

/**
 * Parses untrusted manifest bytes: bounded by MANIFEST_LIMITS, canonical JSON required, then
 * {@link validateManifest}.
 *
 * @example
 * const m = parseManifest(await readFile('manifest.json'));
 */
export function parseManifest(bytes: Uint8Array): Manifest {
  return validateManifest(parseCanonicalJson(bytes, MANIFEST_LIMITS));
}

/**
 * Validates and returns the canonical bytes of `m`: the bytes that are stored and signed.
 * MANIFEST_TOO_LARGE or MANIFEST_TOO_DEEP if they exceed MANIFEST_LIMITS (readers would refuse
 * them), JSON_MALFORMED for values outside I-JSON.
 *
 * @example
 * await writeFile('manifest.json', serializeManifest(m));
 */
export function serializeManifest(m: Manifest): Buffer {
  const bytes = canonicalBytes(validateManifest(m));
  parseCanonicalJson(bytes, MANIFEST_LIMITS); // never write what a reader would refuse
  return bytes;
}
