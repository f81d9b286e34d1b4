/**
 * Reading an /etc tree that may be hostile: every lookup is relative to an open directory
 * (`/proc/self/fd/N/name`, Node's stand-in for openat), the last component is never followed,
 * and every opened object is checked against the device and inode the scan saw. A symlink in
 * the tree is data (its target text), never a path we resolve.
 */
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, open, readdir, readlink, realpath, type FileHandle } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import { FerryError } from '@ferry/core';

/** What kind of object an entry is; `special` covers fifos, sockets and device nodes. */
export type EtcEntryType = 'file' | 'dir' | 'symlink' | 'special';

/** One object of a scanned tree, keyed by its path relative to the root ('' is the root). */
export interface EtcEntry {
  readonly type: EtcEntryType;
  /** Permission bits including setuid, setgid and sticky. */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly mtimeMs: number;
  readonly dev: bigint;
  readonly ino: bigint;
  /** SHA-256 of the content (files only). */
  readonly digest?: string;
  /** The link text, verbatim (symlinks only). */
  readonly target?: string;
  /** Extended attributes as canonical JSON of sorted [name, hex] pairs, when read. */
  readonly xattrs?: string;
}

/** A scanned tree: its real root path and every entry by relative path. */
export interface EtcTree {
  readonly root: string;
  readonly entries: ReadonlyMap<string, EtcEntry>;
}

/** Bounds on a tree we scan: a hostile tree must not exhaust memory, fds or time. */
export interface EtcTreeLimits {
  maxEntries: number;
  maxDepth: number;
  maxFileBytes: number;
  maxTotalBytes: number;
}

/** Default bounds, generous for any real /etc (Debian minbase: ~600 entries, ~3 MiB). */
export const ETC_TREE_LIMITS: Readonly<EtcTreeLimits> = {
  maxEntries: 100_000,
  maxDepth: 64,
  maxFileBytes: 64 * 1024 * 1024,
  maxTotalBytes: 1024 * 1024 * 1024,
};

const NOFOLLOW = constants.O_NOFOLLOW;
const READ_FILE = constants.O_RDONLY | NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY;
const READ_DIR = constants.O_RDONLY | NOFOLLOW | constants.O_DIRECTORY;
const utf8 = new TextDecoder('utf-8', { fatal: true });

const at = (dir: FileHandle, name = ''): string =>
  name === '' ? `/proc/self/fd/${dir.fd}` : `/proc/self/fd/${dir.fd}/${name}`;

function typeOf(st: BigIntStats): EtcEntryType {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  return 'special';
}

function changed(rel: string): FerryError {
  return new FerryError('ETC_TREE_CHANGED', `${rel || '.'} changed while it was being read`);
}

/** Opens `dir/name` without following a symlink and checks it is the object `st` described. */
async function openChecked(
  dir: FileHandle,
  name: string,
  flags: number,
  expect: EtcEntry,
  rel: string,
) {
  let fh: FileHandle;
  try {
    fh = await open(at(dir, name), flags);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ELOOP') throw changed(rel);
    throw e;
  }
  const st = await fh.stat({ bigint: true });
  if (st.dev !== expect.dev || st.ino !== expect.ino || typeOf(st) !== expect.type) {
    await fh.close();
    throw changed(rel);
  }
  return fh;
}

function toEntry(st: BigIntStats, extra: { digest?: string; target?: string } = {}): EtcEntry {
  return {
    type: typeOf(st),
    mode: Number(st.mode & 0o7777n),
    uid: Number(st.uid),
    gid: Number(st.gid),
    size: Number(st.size),
    mtimeMs: Number(st.mtimeMs),
    dev: st.dev,
    ino: st.ino,
    ...extra,
  };
}

/** Reads an open file whole, bounded; the caller checks size and digest. */
async function readBounded(fh: FileHandle, max: number, rel: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for (;;) {
    const buf = Buffer.alloc(Math.min(1 << 20, max + 1 - total));
    const { bytesRead } = await fh.read(buf, 0, buf.length, null);
    if (bytesRead === 0) break;
    total += bytesRead;
    if (total > max) throw new FerryError('ETC_TOO_LARGE', `${rel} is larger than ${max} bytes`);
    chunks.push(buf.subarray(0, bytesRead));
  }
  return Buffer.concat(chunks);
}

interface ScanState {
  readonly limits: EtcTreeLimits;
  readonly entries: Map<string, EtcEntry>;
  totalBytes: number;
}

async function scanChild(dir: FileHandle, name: string, rel: string, depth: number, s: ScanState) {
  if (s.entries.size >= s.limits.maxEntries)
    throw new FerryError('ETC_TOO_LARGE', `more than ${s.limits.maxEntries} entries`);
  const st = await lstat(at(dir, name), { bigint: true });
  const probe = toEntry(st);
  if (probe.type === 'symlink') {
    const target = await readlink(at(dir, name));
    s.entries.set(rel, { ...probe, target });
  } else if (probe.type === 'file') {
    if (probe.size > s.limits.maxFileBytes || (s.totalBytes += probe.size) > s.limits.maxTotalBytes)
      throw new FerryError('ETC_TOO_LARGE', `${rel}: file or tree over the size limit`);
    const fh = await openChecked(dir, name, READ_FILE, probe, rel);
    try {
      const data = await readBounded(fh, s.limits.maxFileBytes, rel);
      if (data.length !== probe.size) throw changed(rel);
      s.entries.set(rel, { ...probe, digest: createHash('sha256').update(data).digest('hex') });
    } finally {
      await fh.close();
    }
  } else if (probe.type === 'dir') {
    s.entries.set(rel, probe);
    const sub = await openChecked(dir, name, READ_DIR, probe, rel);
    try {
      await scanDir(sub, rel, depth + 1, s);
    } finally {
      await sub.close();
    }
  } else s.entries.set(rel, probe);
}

async function scanDir(dir: FileHandle, rel: string, depth: number, s: ScanState) {
  if (depth > s.limits.maxDepth)
    throw new FerryError('ETC_TOO_LARGE', `${rel} nests deeper than ${s.limits.maxDepth}`);
  const raw = await readdir(at(dir), { encoding: 'buffer' });
  const names = raw.map((b) => {
    try {
      return utf8.decode(b);
    } catch {
      throw new FerryError('ETC_INPUT_INVALID', `${rel || '.'}: a file name is not UTF-8`);
    }
  });
  for (const name of names.sort())
    await scanChild(dir, name, rel ? `${rel}/${name}` : name, depth, s);
}

/** Opens a tree root, which must be a real directory (not a symlink to one). */
async function openRoot(path: string): Promise<{ fh: FileHandle; root: string; st: BigIntStats }> {
  const st = await lstat(path, { bigint: true }).catch((e: unknown) => {
    throw new FerryError('ETC_INPUT_INVALID', `${path} cannot be read`, { cause: e });
  });
  if (!st.isDirectory()) throw new FerryError('ETC_INPUT_INVALID', `${path} is not a directory`);
  const root = await realpath(path);
  const fh = await open(root, READ_DIR);
  const now = await fh.stat({ bigint: true });
  if (now.ino !== st.ino || now.dev !== st.dev) {
    await fh.close();
    throw changed('');
  }
  return { fh, root, st };
}

/**
 * Scans a tree with lstat only: files are hashed (opened O_NOFOLLOW and checked to be the
 * inode the lstat saw), symlinks are read as text, nothing is followed.
 *
 * @example
 * const live = await scanEtcTree('/etc');
 * live.entries.get('hostname')?.digest;
 */
export async function scanEtcTree(
  path: string,
  limits: Partial<EtcTreeLimits> = {},
): Promise<EtcTree> {
  const { fh, root, st } = await openRoot(path);
  const s: ScanState = {
    limits: { ...ETC_TREE_LIMITS, ...limits },
    entries: new Map(),
    totalBytes: 0,
  };
  try {
    s.entries.set('', toEntry(st));
    await scanDir(fh, '', 0, s);
  } finally {
    await fh.close();
  }
  return { root, entries: s.entries };
}

/** Opens the parent directory of `rel` by walking from the root one O_NOFOLLOW step at a time. */
async function openParent(tree: EtcTree, rel: string): Promise<{ dir: FileHandle; name: string }> {
  const parts = rel.split('/');
  const name = parts.pop() ?? '';
  let dir = await open(tree.root, READ_DIR);
  let sofar = '';
  try {
    for (const part of parts) {
      sofar = sofar ? `${sofar}/${part}` : part;
      const want = tree.entries.get(sofar);
      if (want?.type !== 'dir') throw changed(sofar);
      const next = await openChecked(dir, part, READ_DIR, want, sofar);
      await dir.close();
      dir = next;
    }
  } catch (e) {
    await dir.close();
    throw e;
  }
  return { dir, name };
}

/** Reads a scanned file again, refusing if it is no longer the file the scan hashed. */
export async function readEtcFile(tree: EtcTree, rel: string, limit: number): Promise<Buffer> {
  const entry = tree.entries.get(rel);
  if (entry?.type !== 'file') throw changed(rel);
  const { dir, name } = await openParent(tree, rel);
  try {
    const fh = await openChecked(dir, name, READ_FILE, entry, rel);
    try {
      const data = await readBounded(fh, limit, rel);
      if (createHash('sha256').update(data).digest('hex') !== entry.digest) throw changed(rel);
      return data;
    } finally {
      await fh.close();
    }
  } finally {
    await dir.close();
  }
}

/**
 * Whether two entries are the same for merging: type, mode, owner, extended attributes, and
 * content (file digest, symlink text). A directory is compared by its own metadata only; its children are
 * entries of their own. Missing equals missing.
 */
export function sameEntry(a: EtcEntry | undefined, b: EtcEntry | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return (
    a.type === b.type &&
    a.mode === b.mode &&
    a.uid === b.uid &&
    a.gid === b.gid &&
    a.digest === b.digest &&
    a.target === b.target &&
    (a.xattrs ?? '[]') === (b.xattrs ?? '[]')
  );
}
