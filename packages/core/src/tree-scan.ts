/**
 * scanTree: the listing of a directory on disk. The directory is hostile input (a rootfs
 * staging tree, a mounted image): it is only read, symlinks are never followed, and every path
 * below the root is resolved through an open directory fd (/proc/self/fd/N/name), so a
 * directory swapped for a symlink during the scan cannot lead the scan outside the tree.
 */
import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { lstat, open, readdir, readlink, type FileHandle } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { FerryError, withContext } from './errors.ts';
import {
  ObjectHasher,
  TREE_LIMITS,
  TREE_MAX_PATH,
  type TreeEntry,
  type TreeListing,
  type TreeLimits,
} from './tree.ts';

/** How {@link scanTree} reads a tree. */
export interface ScanOptions {
  /** Read extended attributes with getfattr (package `attr`); default true (TOOL_MISSING without it). */
  xattrs?: boolean;
  /** Bounds: scanning stops with TREE_TOO_LARGE past `maxEntries`. */
  limits?: TreeLimits;
}

const { O_RDONLY, O_NOFOLLOW, O_NONBLOCK, O_DIRECTORY } = constants;
const READ_CHUNK = 1 << 20;
const utf8 = new TextDecoder('utf-8', { fatal: true });

interface Scan {
  out: TreeEntry[];
  xattrs: Map<string, Record<string, string>>;
  maxEntries: number;
  buf: Buffer;
}

const fdPath = (fh: FileHandle, name?: string): string =>
  name === undefined ? `/proc/self/fd/${fh.fd}` : `/proc/self/fd/${fh.fd}/${name}`;

function base(rel: string, st: Stats, scan: Scan): TreeEntry {
  if (scan.out.length >= scan.maxEntries)
    throw new FerryError('TREE_TOO_LARGE', `tree has more than ${scan.maxEntries} entries`);
  const e: TreeEntry = { path: rel, type: 'dir', mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
  const x = scan.xattrs.get(rel);
  if (x) e.xattrs = x;
  return e;
}

/** Opens `path` without following a symlink and checks it is still the inode lstat saw. */
async function openSame(path: string, flags: number, st: Stats): Promise<FileHandle> {
  const fh = await open(path, flags | O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  const now = await fh.stat();
  if (now.ino !== st.ino || now.dev !== st.dev) {
    await fh.close();
    throw new FerryError('TREE_INVALID', `${path} changed while it was scanned`);
  }
  return fh;
}

async function hashFile(fh: FileHandle, e: TreeEntry, scan: Scan): Promise<void> {
  const size = (await fh.stat()).size;
  const h = new ObjectHasher({ ...e, size });
  for (;;) {
    const { bytesRead } = await fh.read(scan.buf, 0, READ_CHUNK, null);
    if (bytesRead === 0) break;
    h.update(scan.buf.subarray(0, bytesRead));
  }
  if (h.bytes !== size) throw new FerryError('TREE_INVALID', `${e.path} changed while it was read`);
  e.size = size;
  e.object = h.objectId();
}

async function scanChild(dir: FileHandle, name: string, rel: string, scan: Scan): Promise<void> {
  const abs = fdPath(dir, name);
  const st = await lstat(abs);
  const e = base(rel, st, scan);
  scan.out.push(e);
  if (st.isDirectory()) {
    const fh = await openSame(abs, O_DIRECTORY, st);
    try {
      await scanDir(fh, rel, scan);
    } finally {
      await fh.close();
    }
  } else if (st.isFile()) {
    e.type = 'file';
    const fh = await openSame(abs, 0, st);
    try {
      await hashFile(fh, e, scan);
    } finally {
      await fh.close();
    }
  } else if (st.isSymbolicLink()) {
    e.type = 'symlink';
    e.target = decodeName(await readlink(abs, { encoding: 'buffer' }), rel);
  } else if (st.isCharacterDevice() || st.isBlockDevice()) {
    e.type = st.isCharacterDevice() ? 'char' : 'block';
    // Linux dev_t: minor in bits 0-7 and 20-31, major in bits 8-19.
    e.major = Math.floor(st.rdev / 256) & 0xfff;
    e.minor = (st.rdev & 0xff) | (Math.floor(st.rdev / 4096) & 0xfff00);
  } else if (st.isFIFO()) e.type = 'fifo';
  else throw new FerryError('TREE_INVALID', `${rel}: sockets cannot be part of a tree`);
}

function decodeName(b: Buffer, where: string): string {
  try {
    return utf8.decode(b);
  } catch (e) {
    throw new FerryError('TREE_INVALID', `${where || '/'}: a name is not UTF-8`, { cause: e });
  }
}

async function scanDir(dir: FileHandle, rel: string, scan: Scan): Promise<void> {
  for (const raw of await readdir(fdPath(dir), { encoding: 'buffer' })) {
    const name = decodeName(raw, rel);
    const child = rel === '' ? name : `${rel}/${name}`;
    if (Buffer.byteLength(child) > TREE_MAX_PATH)
      throw new FerryError('TREE_INVALID', `a path is longer than ${TREE_MAX_PATH} bytes`);
    await scanChild(dir, name, child, scan);
  }
}

/** Undoes getfattr's quoting of names: backslash + three octal digits, or a doubled backslash. */
function unquote(s: string): string {
  const bytes = Buffer.from(s.replace(/\\\\/g, '\\134'), 'latin1');
  const out: number[] = [];
  for (let i = 0; i < bytes.length; i++) {
    const isOctal = bytes[i] === 0x5c && /^[0-7]{3}$/.test(bytes.toString('latin1', i + 1, i + 4));
    out.push(isOctal ? parseInt(bytes.toString('latin1', i + 1, i + 4), 8) : bytes[i]!);
    if (isOctal) i += 3;
  }
  return Buffer.from(out).toString('utf8');
}

/** Parses `getfattr -d -e base64` output into path (relative to ".") -> name -> base64. */
export function parseGetfattr(text: string): Map<string, Record<string, string>> {
  const map = new Map<string, Record<string, string>>();
  let cur: Record<string, string> | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('# file: ')) {
      const p = unquote(line.slice(8));
      const rel = p === '.' ? '' : p.replace(/^\.\//, '');
      cur = {};
      map.set(rel, cur);
    } else if (line !== '' && cur) {
      const eq = line.indexOf('=');
      const name = unquote(eq < 0 ? line : line.slice(0, eq));
      const v = eq < 0 ? '' : line.slice(eq + 1);
      if (v !== '' && !v.startsWith('0s'))
        throw new FerryError('TOOL_FAILED', 'getfattr printed a value not in base64');
      cur[name] = v.slice(2);
    }
  }
  for (const [k, v] of map) if (Object.keys(v).length === 0) map.delete(k);
  return map;
}

function readXattrs(dir: string, maxBytes: number): Promise<Map<string, Record<string, string>>> {
  // -P -h: a physical walk that examines symlinks themselves and never follows one.
  const args = ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'base64', '--absolute-names', '.'];
  return new Promise((resolve, reject) => {
    execFile('getfattr', args, { cwd: dir, maxBuffer: maxBytes }, (err, stdout, stderr) => {
      if (err && (err as NodeJS.ErrnoException).code === 'ENOENT')
        return reject(new FerryError('TOOL_MISSING', 'getfattr (package attr) is not installed'));
      if (err && /maxBuffer/.test(err.message))
        return reject(new FerryError('TREE_TOO_LARGE', 'xattr dump exceeds the size limit'));
      // A filesystem that stores no xattrs (a squashfs image built without any) answers ENOTSUP
      // for every path: that is "no xattrs", not a failure.
      const unsupported = stderr
        .split('\n')
        .filter((l) => l !== '')
        .every((l) => l.endsWith(': Operation not supported'));
      if (err && !unsupported)
        return reject(new FerryError('TOOL_FAILED', `getfattr: ${stderr.slice(0, 500)}`));
      try {
        resolve(parseGetfattr(stdout));
      } catch (e) {
        reject(e instanceof Error ? e : new Error(String(e)));
      }
    });
  });
}

async function openRoot(dir: string): Promise<FileHandle> {
  try {
    return await open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOTDIR' || code === 'ELOOP')
      throw new FerryError('TREE_INVALID', `${dir} is not a directory (symlinks are not followed)`);
    throw withContext(`scanning ${dir}`, e);
  }
}

/**
 * The listing of the tree at `dir`, sorted bytewise by path. Uses lstat only, opens files with
 * O_NOFOLLOW and checks each is still the inode lstat saw, streams file hashing in 1 MiB reads.
 * Hardlinked files become separate entries with the same object. Refuses sockets and non-UTF-8
 * names (TREE_INVALID), more than `limits.maxEntries` entries (TREE_TOO_LARGE).
 *
 * @example
 * const listing = await scanTree('/var/tmp/rootfs');
 * const digest = treeDigest(encodeTree(listing));
 */
export async function scanTree(dir: string, opts: ScanOptions = {}): Promise<TreeListing> {
  const limits = opts.limits ?? TREE_LIMITS;
  const root = await openRoot(dir);
  try {
    const xattrs =
      opts.xattrs === false
        ? new Map<string, Record<string, string>>()
        : await readXattrs(fdPath(root), limits.maxBytes);
    const scan: Scan = {
      out: [],
      xattrs,
      maxEntries: limits.maxEntries,
      buf: Buffer.alloc(READ_CHUNK),
    };
    scan.out.push(base('', await root.stat(), scan));
    await scanDir(root, '', scan);
    const keyed = scan.out.map((e) => [Buffer.from(e.path, 'utf8'), e] as const);
    keyed.sort((a, b) => Buffer.compare(a[0], b[0]));
    return { entries: keyed.map((k) => k[1]) };
  } finally {
    await root.close();
  }
}
