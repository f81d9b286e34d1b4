/**
 * Safe extraction of untrusted tar entries into a private staging tree. The rootfs is hostile
 * input: an absolute symlink inside it points at the host, so nothing is ever written through
 * a path that could be a symlink. Every parent is checked with lstat (a real directory we made),
 * files are created O_EXCL|O_NOFOLLOW, links are never followed, and names are bounded.
 */
import {
  chmodSync as chmod,
  closeSync,
  constants,
  lchownSync as lchown,
  linkSync as link,
  lstatSync,
  mkdirSync as mkdir,
  openSync,
  readdirSync as readdir,
  rmSync as rm,
  symlinkSync as symlink,
  unlinkSync as unlink,
  writeSync,
} from 'node:fs';
import { FerryError } from '@ferry/core';
import { runTool } from './spawn.ts';
import type { TarEntry } from './tar-reader.ts';

/** Bounds on what one build may extract. */
export interface ExtractLimits {
  maxEntries: number;
  maxPathBytes: number;
  maxNameBytes: number;
  maxXattrs: number;
}

/** Default bounds: far above a full distribution rootfs, far below exhausting the builder. */
export const DEFAULT_EXTRACT_LIMITS: ExtractLimits = {
  maxEntries: 2_000_000,
  maxPathBytes: 4096,
  maxNameBytes: 255,
  maxXattrs: 64,
};

const XATTR_NAME = /^(user|security|trusted|system)\.[^\0]{1,240}$/;
const CREATE_FLAGS =
  constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

function traversal(entry: string, why: string): FerryError {
  return new FerryError('IMAGE_PATH_TRAVERSAL', `entry ${JSON.stringify(entry)} ${why}`);
}

function invalid(entry: string, why: string): FerryError {
  return new FerryError('IMAGE_INPUT_INVALID', `entry ${JSON.stringify(entry)} ${why}`);
}

/**
 * Splits an archive member name into safe components ("./a//b/" becomes ["a", "b"], the root is
 * []). Refuses NUL, absolute names and `..` with IMAGE_PATH_TRAVERSAL; over-long names with
 * IMAGE_INPUT_INVALID.
 */
export function normalizeEntryPath(
  name: string,
  limits: ExtractLimits = DEFAULT_EXTRACT_LIMITS,
): string[] {
  if (name.includes('\0')) throw traversal(name, 'contains NUL');
  if (name.startsWith('/')) throw traversal(name, 'is an absolute path');
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw traversal(name, 'has a .. component');
  if (Buffer.byteLength(name) > limits.maxPathBytes) throw invalid(name, 'is too long');
  if (parts.some((p) => Buffer.byteLength(p) > limits.maxNameBytes))
    throw invalid(name, 'has a component longer than 255 bytes');
  return parts;
}

function isErrno(e: unknown, code: string): boolean {
  return (e as NodeJS.ErrnoException)?.code === code;
}

// Synchronous metadata calls: one syscall each is far cheaper than a thread-pool round trip,
// and entries are applied strictly one after another anyway.
function lstat(path: string) {
  return lstatSync(path, { throwIfNoEntry: false }) ?? null;
}

/** A private directory that untrusted entries are extracted into, one layer at a time. */
export class StagingTree {
  readonly root: string;
  readonly limits: ExtractLimits;
  /** Entries written so far (all layers). */
  entries = 0;
  // Relative paths verified (lstat) to be real directories we made; invalidated on removal.
  #dirs = new Set<string>(['']);
  #layer = new Set<string>();
  #layerAncestors = new Set<string>();

  constructor(root: string, limits: ExtractLimits = DEFAULT_EXTRACT_LIMITS) {
    this.root = root;
    this.limits = limits;
  }

  /** Creates the (empty, root-owned 0755) staging root; `root` must not exist yet. */
  init(): void {
    mkdir(this.root, { mode: 0o755 });
    chmod(this.root, 0o755);
  }

  abs(rel: string): string {
    return rel === '' ? this.root : `${this.root}/${rel}`;
  }

  /** Starts a new layer: whiteouts from here on only remove what earlier layers wrote. */
  beginLayer(): void {
    this.#layer.clear();
    this.#layerAncestors.clear();
  }

  /**
   * Makes sure every component of `parts` is a real directory, creating missing ones when
   * `create`; returns its relative path, or null if missing and not created.
   * Attack stopped: a symlink (or file) as a parent would send the write outside the root.
   */
  resolveDir(parts: string[], entry: string, create: boolean): string | null {
    let rel = '';
    for (const p of parts) {
      rel = rel === '' ? p : `${rel}/${p}`;
      if (this.#dirs.has(rel)) continue;
      const st = lstat(this.abs(rel));
      if (!st) {
        if (!create) return null;
        mkdir(this.abs(rel), { mode: 0o755 });
        chmod(this.abs(rel), 0o755);
      } else if (!st.isDirectory()) {
        const what = st.isSymbolicLink() ? 'a symlink' : 'not a directory';
        throw traversal(entry, `has a parent ${JSON.stringify(rel)} that is ${what}`);
      }
      this.#dirs.add(rel);
    }
    return rel;
  }

  /** Removes `rel` (recursively, never following symlinks). */
  remove(rel: string): void {
    rm(this.abs(rel), { recursive: true, force: true });
    for (const d of this.#dirs) if (d === rel || d.startsWith(`${rel}/`)) this.#dirs.delete(d);
  }

  /**
   * Removes whatever earlier layers left at `rel`, keeping anything this layer wrote (a
   * whiteout or opaque marker only hides lower layers).
   */
  pruneLower(rel: string): void {
    const st = lstat(this.abs(rel));
    if (!st) return;
    if (!this.#layer.has(rel) && !this.#layerAncestors.has(rel)) return this.remove(rel);
    if (st.isDirectory()) this.pruneChildren(rel);
  }

  /** Applies {@link pruneLower} to every child of the directory `rel` (an opaque marker). */
  pruneChildren(rel: string): void {
    for (const child of readdir(this.abs(rel)).sort())
      this.pruneLower(rel === '' ? child : `${rel}/${child}`);
  }

  #mark(rel: string): void {
    this.#layer.add(rel);
    for (let i = rel.lastIndexOf('/'); i > 0; i = rel.lastIndexOf('/', i - 1)) {
      const up = rel.slice(0, i);
      if (this.#layerAncestors.has(up)) break;
      this.#layerAncestors.add(up);
    }
  }

  /** Writes one (non-whiteout) entry with its data. */
  async write(e: TarEntry, parts: string[], body: AsyncIterable<Buffer>): Promise<void> {
    if (++this.entries > this.limits.maxEntries)
      throw invalid(e.path, `exceeds the limit of ${this.limits.maxEntries} entries`);
    if (e.xattrs.size > this.limits.maxXattrs) throw invalid(e.path, 'has too many xattrs');
    if (parts.length === 0) {
      if (e.type !== 'dir') throw traversal(e.path, 'replaces the root with a non-directory');
      return this.#finish(e, '');
    }
    this.resolveDir(parts.slice(0, -1), e.path, true);
    const rel = parts.join('/');
    const target = e.type === 'hardlink' ? this.#linkTarget(e, rel) : '';
    this.#clear(rel, e.type === 'dir');
    const abs = this.abs(rel);
    if (e.type === 'file') await this.#writeFile(abs, body);
    else if (e.type === 'dir') mkdirIfMissing(abs);
    else if (e.type === 'hardlink') link(this.abs(target), abs);
    else if (e.type === 'symlink') {
      if (e.linkpath === '') throw invalid(e.path, 'is a symlink with an empty target');
      symlink(e.linkpath, abs); // targets may be anything: they are never followed
    } else {
      const node = e.type === 'fifo' ? ['p'] : [e.type[0]!, `${e.devmajor}`, `${e.devminor}`];
      await runTool('mknod', ['-m', '0600', abs, ...node]);
    }
    if (e.type === 'dir') this.#dirs.add(rel);
    this.#mark(rel);
    if (e.type !== 'hardlink') await this.#finish(e, rel);
  }

  // Hardlinks only to earlier regular files inside the root, validated like any entry name.
  #linkTarget(e: TarEntry, rel: string): string {
    const parts = normalizeEntryPath(e.linkpath, this.limits);
    const dir = this.resolveDir(parts.slice(0, -1), e.path, false);
    const target = parts.join('/');
    const st = dir === null || target === rel ? null : lstat(this.abs(target));
    if (!st?.isFile())
      throw invalid(e.path, 'is a hardlink to something not an earlier regular file');
    return target;
  }

  #clear(rel: string, keepDir: boolean): void {
    const st = lstat(this.abs(rel));
    if (!st || (keepDir && st.isDirectory())) return;
    if (st.isDirectory()) this.remove(rel);
    else unlink(this.abs(rel));
  }

  async #writeFile(abs: string, body: AsyncIterable<Buffer>): Promise<void> {
    const fd = openSync(abs, CREATE_FLAGS, 0o600);
    try {
      for await (const piece of body)
        for (let off = 0; off < piece.length;) off += writeSync(fd, piece, off);
    } finally {
      closeSync(fd);
    }
  }

  // Owner first, then mode (chown clears setuid), then xattrs (chown clears security.capability).
  async #finish(e: TarEntry, rel: string): Promise<void> {
    const abs = this.abs(rel);
    lchown(abs, e.uid, e.gid);
    if (e.type !== 'symlink') {
      if (lstat(abs)?.isSymbolicLink() !== false)
        throw traversal(e.path, 'is not what was written');
      chmod(abs, e.mode);
    }
    for (const [name, value] of [...e.xattrs].sort(([a], [b]) => (a < b ? -1 : 1))) {
      if (!XATTR_NAME.test(name) || value.length > 65536)
        throw invalid(e.path, `has an invalid xattr ${JSON.stringify(name)}`);
      const v = value.length ? ['-v', `0x${value.toString('hex')}`] : [];
      await runTool('setfattr', ['-h', '-n', name, ...v, '--', abs]);
    }
  }
}

function mkdirIfMissing(abs: string): void {
  try {
    mkdir(abs, { mode: 0o700 });
  } catch (e) {
    if (!isErrno(e, 'EEXIST')) throw e;
  }
}
