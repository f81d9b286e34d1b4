/**
 * Tree listings: one root filesystem tree described entry by entry (type, mode, owner, xattrs,
 * file object ids, link targets, device numbers; never mtimes), in one canonical encoding whose
 * SHA-256 (the tree digest) release manifests sign. Laid out in docs/formats/tree.md.
 * The parser treats the bytes as untrusted: bounded, fully checked, exactly one valid encoding.
 */
import { createHash, type Hash } from 'node:crypto';
import { FerryError, isFerryError } from './errors.ts';
import { canonicalBytes, parseCanonicalJson } from './canonical-json.ts';

/** The kinds of entry a tree holds. Sockets are not representable (a scan refuses them). */
export type TreeEntryType = 'dir' | 'file' | 'symlink' | 'char' | 'block' | 'fifo';

/** One entry of a tree. Which optional fields are present is fixed by `type`. */
export interface TreeEntry {
  /** Relative path, '/'-separated, no leading slash; the root dir is "". */
  path: string;
  type: TreeEntryType;
  /** Permission bits incl. setuid/setgid/sticky (12 bits). Always 0o777 for symlinks. */
  mode: number;
  uid: number;
  gid: number;
  /** Extended attributes, name -> base64 value. Absent when there are none (never empty). */
  xattrs?: Record<string, string>;
  /** Files: size in bytes. */
  size?: number;
  /** Files: object id (see {@link ObjectHasher}). */
  object?: string;
  /** Symlinks: the link target, never followed. */
  target?: string;
  /** Char and block devices: device numbers. */
  major?: number;
  minor?: number;
}

/** A tree: entries sorted bytewise (UTF-8) by path, root dir first. */
export interface TreeListing {
  entries: TreeEntry[];
}

/** Bounds applied to a listing before and while it is parsed. */
export interface TreeLimits {
  /** Largest accepted listing in bytes. */
  maxBytes: number;
  /** Most entries accepted. */
  maxEntries: number;
}

/** Default bounds: 1 Mi entries (a full desktop distro has ~300 Ki), 512 MiB. */
export const TREE_LIMITS: TreeLimits = { maxBytes: 512 * 1024 * 1024, maxEntries: 1 << 20 };

/** The listing format version this Ferry writes and reads. */
export const TREE_FORMAT_VERSION = 1;

/** Longest path in bytes (Linux PATH_MAX). */
export const TREE_MAX_PATH = 4096;
const MAX_NAME = 255;
const MAX_LINE = 256 * 1024;
const MAX_XATTR_BYTES = 64 * 1024;
const HEX64 = /^[0-9a-f]{64}$/;
const XATTR_NAME = /^(user|trusted|security|system)\.[^\0]+$/;
const FIELDS: Record<TreeEntryType, string[]> = {
  dir: [],
  file: ['object', 'size'],
  symlink: ['target'],
  char: ['major', 'minor'],
  block: ['major', 'minor'],
  fifo: [],
};
const COMMON = ['gid', 'mode', 'path', 'type', 'uid'];

const invalid = (why: string): FerryError =>
  new FerryError('TREE_INVALID', `invalid tree listing: ${why}`);
const utf8Len = (s: string): number => Buffer.byteLength(s, 'utf8');
const isInt = (v: unknown, max: number): v is number =>
  typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= max;

/** Compares two paths bytewise as UTF-8, which is code point order. */
export function comparePaths(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

function checkPath(p: unknown): string {
  if (typeof p !== 'string') throw invalid('path is not a string');
  if (p === '') return p;
  if (utf8Len(p) > TREE_MAX_PATH) throw invalid(`path longer than ${TREE_MAX_PATH} bytes`);
  for (const c of p.split('/')) {
    // Attack stopped: a component that climbs out of (or aliases a dir inside) the checkout.
    if (c === '' || c === '.' || c === '..' || c.includes('\0') || utf8Len(c) > MAX_NAME)
      throw invalid(`bad path ${JSON.stringify(p.slice(0, 200))}`);
  }
  return p;
}

function checkXattrs(x: unknown): void {
  if (x === undefined) return;
  if (typeof x !== 'object' || x === null || Array.isArray(x)) throw invalid('xattrs not a map');
  const names = Object.keys(x);
  if (names.length === 0) throw invalid('empty xattrs map (leave it out)');
  let total = 0;
  for (const n of names) {
    const v = (x as Record<string, unknown>)[n];
    if (!XATTR_NAME.test(n) || utf8Len(n) > MAX_NAME) throw invalid(`bad xattr name ${n}`);
    if (typeof v !== 'string') throw invalid(`xattr ${n} is not a string`);
    const bytes = Buffer.from(v, 'base64');
    // One encoding per value: Node's base64 decoder is lenient, the re-encoding is not.
    if (bytes.toString('base64') !== v) throw invalid(`xattr ${n} is not canonical base64`);
    total += utf8Len(n) + bytes.length;
  }
  if (total > MAX_XATTR_BYTES) throw invalid(`xattrs larger than ${MAX_XATTR_BYTES} bytes`);
}

function checkFields(e: TreeEntry): void {
  if (!isInt(e.mode, 0o7777)) throw invalid(`${e.path}: bad mode`);
  if (!isInt(e.uid, 0xfffffffe) || !isInt(e.gid, 0xfffffffe)) throw invalid(`${e.path}: bad owner`);
  checkXattrs(e.xattrs);
  switch (e.type) {
    case 'file':
      if (!isInt(e.size, Number.MAX_SAFE_INTEGER)) throw invalid(`${e.path}: bad size`);
      if (typeof e.object !== 'string' || !HEX64.test(e.object))
        throw invalid(`${e.path}: bad object id`);
      return;
    case 'symlink':
      // Linux ignores a symlink's mode and always reports 0777: any other value is unrepresentable.
      if (e.mode !== 0o777) throw invalid(`${e.path}: symlink mode must be 0777`);
      if (typeof e.target !== 'string' || e.target === '' || e.target.includes('\0'))
        throw invalid(`${e.path}: bad symlink target`);
      if (utf8Len(e.target) >= TREE_MAX_PATH) throw invalid(`${e.path}: symlink target too long`);
      return;
    case 'char':
    case 'block':
      if (!isInt(e.major, 0xfff) || !isInt(e.minor, 0xfffff))
        throw invalid(`${e.path}: bad device numbers`);
      return;
    default:
  }
}

/** Schema check of one decoded line: exact key set for its type, every value in range. */
function checkEntry(v: unknown): TreeEntry {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalid('entry not an object');
  const o = v as Record<string, unknown>;
  const type = o.type;
  if (typeof type !== 'string' || !Object.hasOwn(FIELDS, type)) throw invalid('bad entry type');
  const allowed = new Set([...COMMON, ...FIELDS[type as TreeEntryType], 'xattrs']);
  for (const k of Object.keys(o)) if (!allowed.has(k)) throw invalid(`unknown key ${k}`);
  for (const k of [...COMMON, ...FIELDS[type as TreeEntryType]])
    if (!(k in o)) throw invalid(`missing key ${k}`);
  const e = o as unknown as TreeEntry;
  checkPath(e.path);
  checkFields(e);
  return e;
}

function entryObject(e: TreeEntry): Record<string, unknown> {
  const o: Record<string, unknown> = {
    path: e.path,
    type: e.type,
    mode: e.mode,
    uid: e.uid,
    gid: e.gid,
  };
  for (const k of FIELDS[e.type] ?? []) o[k] = e[k as keyof TreeEntry];
  if (e.xattrs && Object.keys(e.xattrs).length > 0) o.xattrs = e.xattrs;
  return o;
}

function header(entries: number): Buffer {
  return canonicalBytes({ entries, format: 'ferry-tree', version: TREE_FORMAT_VERSION });
}

/**
 * The canonical bytes of a listing: a header line, then one RFC 8785 JSON object per entry,
 * each line ending in "\n". Throws TREE_INVALID (or TREE_TOO_LARGE) for a listing the parser
 * would refuse, so every encoded listing parses back to itself.
 *
 * @example
 * const bytes = encodeTree(await scanTree('/srv/rootfs'));
 * const digest = treeDigest(bytes); // what a release manifest signs
 */
export function encodeTree(listing: TreeListing, limits: TreeLimits = TREE_LIMITS): Buffer {
  const NL = Buffer.from('\n');
  const parts: Buffer[] = [header(listing.entries.length), NL];
  for (const e of listing.entries) parts.push(canonicalBytes(entryObject(e)), NL);
  const bytes = Buffer.concat(parts);
  parseTree(bytes, limits);
  return bytes;
}

/** Hex SHA-256 of a listing's canonical bytes: the tree digest. */
export function treeDigest(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function parseLine(line: Buffer, what: string): unknown {
  if (line.length > MAX_LINE)
    throw new FerryError('TREE_TOO_LARGE', `${what} is longer than ${MAX_LINE} bytes`);
  try {
    return parseCanonicalJson(line, { maxBytes: MAX_LINE, maxDepth: 2 });
  } catch (e) {
    if (isFerryError(e, 'JSON_NOT_CANONICAL'))
      throw new FerryError('TREE_NOT_CANONICAL', `${what} is not canonical JSON`, { cause: e });
    throw new FerryError('TREE_INVALID', `${what}: ${(e as Error).message}`, { cause: e });
  }
}

function parseHeader(line: Buffer, limits: TreeLimits): number {
  const h = parseLine(line, 'header') as Record<string, unknown>;
  if (typeof h !== 'object' || h === null || h.format !== 'ferry-tree')
    throw invalid('not a Ferry tree listing');
  if (h.version !== TREE_FORMAT_VERSION) throw invalid(`unknown version ${String(h.version)}`);
  if (Object.keys(h).length !== 3 || !isInt(h.entries, Number.MAX_SAFE_INTEGER))
    throw invalid('bad header');
  if (h.entries > limits.maxEntries)
    throw new FerryError('TREE_TOO_LARGE', `${h.entries} entries exceeds ${limits.maxEntries}`);
  return h.entries;
}

/**
 * Parses untrusted listing bytes. Refuses (TREE_TOO_LARGE) input over the limits, (TREE_INVALID)
 * bad header, schema, path, unsorted or duplicate paths, an entry whose parent is not a dir
 * listed before it, a count differing from the header, and (TREE_NOT_CANONICAL) any line that is
 * not canonical JSON.
 *
 * @example
 * const listing = parseTree(await readFile('trees/ab12.tree'));
 */
export function parseTree(bytes: Uint8Array, limits: TreeLimits = TREE_LIMITS): TreeListing {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length > limits.maxBytes)
    throw new FerryError('TREE_TOO_LARGE', `${buf.length} bytes exceeds ${limits.maxBytes}`);
  if (buf.length === 0 || buf[buf.length - 1] !== 0x0a) throw invalid('does not end in a newline');
  let at = buf.indexOf(0x0a);
  const count = parseHeader(buf.subarray(0, at), limits);
  const entries: TreeEntry[] = [];
  const dirs = new Set<string>();
  let prev: Buffer | undefined;
  for (at++; at < buf.length;) {
    const end = buf.indexOf(0x0a, at);
    if (entries.length >= count) throw invalid('more entries than the header declares');
    const e = checkEntry(parseLine(buf.subarray(at, end), `entry ${entries.length}`));
    const p = Buffer.from(e.path, 'utf8');
    if (prev !== undefined && Buffer.compare(prev, p) >= 0)
      throw invalid(`${e.path}: paths unsorted or duplicated`);
    if (e.path === '') {
      if (e.type !== 'dir') throw invalid('the root entry is not a dir');
    } else {
      const slash = e.path.lastIndexOf('/');
      const parent = slash < 0 ? '' : e.path.slice(0, slash);
      if (!dirs.has(parent)) throw invalid(`${e.path}: parent is not a dir listed before it`);
    }
    if (e.type === 'dir') dirs.add(e.path);
    entries.push(e);
    prev = p;
    at = end + 1;
  }
  if (entries.length !== count) throw invalid('fewer entries than the header declares');
  if (count === 0) throw invalid('no root entry');
  return { entries };
}

/** The metadata an object id covers besides the content. */
export interface ObjectMeta {
  mode: number;
  uid: number;
  gid: number;
  size: number;
  xattrs?: Record<string, string>;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

/**
 * Streams a file object's id: SHA-256 over "ferry-object-v1\0", mode, uid, gid, the xattrs
 * sorted bytewise by name (each length-prefixed), the size (u64, big-endian), then the content.
 * Metadata is hashed because hardlinked checkouts share it: the same bytes with another owner
 * are another object. Also keeps the plain content SHA-256.
 *
 * @example
 * const h = new ObjectHasher(entry);
 * for await (const c of stream) h.update(c);
 * if (h.bytes !== entry.size || h.objectId() !== entry.object) throw ...;
 */
export class ObjectHasher {
  #object: Hash;
  #content = createHash('sha256');
  /** Content bytes hashed so far. */
  bytes = 0;

  constructor(meta: ObjectMeta) {
    this.#object = createHash('sha256');
    this.#object.update('ferry-object-v1\0');
    this.#object.update(Buffer.concat([u32(meta.mode), u32(meta.uid), u32(meta.gid)]));
    const xattrs = Object.entries(meta.xattrs ?? {})
      .map(([n, v]) => [Buffer.from(n, 'utf8'), Buffer.from(v, 'base64')] as const)
      .sort((a, b) => Buffer.compare(a[0], b[0]));
    this.#object.update(u32(xattrs.length));
    for (const [n, v] of xattrs)
      this.#object.update(Buffer.concat([u32(n.length), n, u32(v.length), v]));
    const size = Buffer.alloc(8);
    size.writeBigUInt64BE(BigInt(meta.size));
    this.#object.update(size);
  }

  /** Hashes the next content bytes. */
  update(chunk: Uint8Array): void {
    this.bytes += chunk.length;
    this.#object.update(chunk);
    this.#content.update(chunk);
  }

  /** Hex object id (call once, after the last update). */
  objectId(): string {
    return this.#object.digest('hex');
  }

  /** Hex SHA-256 of the content alone (call once, after the last update). */
  contentSha256(): string {
    return this.#content.digest('hex');
  }
}

/** The object id of in-memory content: a convenience over {@link ObjectHasher}. */
export function objectIdOf(meta: Omit<ObjectMeta, 'size'>, content: Uint8Array): string {
  const h = new ObjectHasher({ ...meta, size: content.length });
  h.update(content);
  return h.objectId();
}

export { scanTree, type ScanOptions } from './tree-scan.ts';
