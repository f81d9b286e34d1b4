/**
 * Building a deployment's tree from the object store. Directories are created writable and get
 * their real mode and owner last (deepest first), so a read-only dir can still be filled.
 * Files are hardlinks to objects (one inode for every deployment), reflinks (own inode, shared
 * extents: writable without touching the object), or plain copies.
 */
import { constants, createReadStream, createWriteStream } from 'node:fs';
import {
  chmod,
  chown,
  copyFile,
  lchown,
  link,
  lutimes,
  mkdir,
  symlink,
  utimes,
} from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { FerryError, type TreeEntry, type TreeListing } from '@ferry/core';
import { applyXattrs, makeNode, type XattrTarget } from './deploy-fs.ts';

/** How a checkout places files: see docs/deployments.md "Checkout modes". */
export type CheckoutMode = 'hardlink' | 'reflink' | 'copy';

const REFLINK_UNSUPPORTED = new Set(['EOPNOTSUPP', 'ENOTSUP', 'EXDEV', 'EINVAL', 'ENOSYS']);

async function copyObject(src: string, dst: string, mode: 'reflink' | 'copy'): Promise<void> {
  if (mode === 'copy') {
    // A byte copy on purpose: copyFile may use copy_file_range, which shares extents on btrfs.
    await pipeline(createReadStream(src), createWriteStream(dst, { flags: 'wx', mode: 0o600 }));
    return;
  }
  try {
    await copyFile(src, dst, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE_FORCE);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? '';
    if (!REFLINK_UNSUPPORTED.has(code)) throw e;
    throw new FerryError('DEPLOY_REFLINK_UNSUPPORTED', `cannot reflink into ${dst} (${code})`, {
      cause: e,
    });
  }
}

/** Places one file; returns true if it needs its metadata applied (not a hardlink). */
async function placeFile(src: string, dst: string, mode: CheckoutMode): Promise<boolean> {
  if (mode !== 'hardlink') {
    await copyObject(src, dst, mode);
    return true;
  }
  try {
    await link(src, dst);
    return false;
  } catch (e) {
    // ext4 allows 65000 links per inode: a very common object (an empty file) can run out.
    if ((e as NodeJS.ErrnoException).code !== 'EMLINK') throw e;
    await copyObject(src, dst, 'copy');
    return true;
  }
}

async function applyOwnerMode(p: string, e: TreeEntry): Promise<void> {
  await chown(p, e.uid, e.gid);
  await chmod(p, e.mode); // after chown, which clears setuid/setgid
  await utimes(p, 0, 0);
}

async function placeEntry(
  e: TreeEntry,
  p: string,
  objectPath: (id: string) => string,
  mode: CheckoutMode,
): Promise<boolean> {
  switch (e.type) {
    case 'dir':
      await mkdir(p, { mode: 0o700 });
      return false;
    case 'file':
      if (!(await placeFile(objectPath(e.object!), p, mode))) return false;
      await applyOwnerMode(p, e);
      return true;
    case 'symlink':
      await symlink(e.target!, p);
      await lchown(p, e.uid, e.gid);
      await lutimes(p, 0, 0);
      return true;
    default:
      await makeNode(p, e.type, e.major, e.minor);
      await applyOwnerMode(p, e);
      return true;
  }
}

/**
 * Creates `dest` (which must not exist) holding `listing`, with files from `objectPath`.
 * Every file, dir and symlink gets mtime 0. Xattrs are set in one setfattr run at the end.
 *
 * @example
 * await buildCheckout(listing, '/var/lib/ferry/deploy/deployments/.tmp-3', (id) => objPath(id), 'hardlink');
 */
export async function buildCheckout(
  listing: TreeListing,
  dest: string,
  objectPath: (id: string) => string,
  mode: CheckoutMode,
): Promise<void> {
  const xattrs: XattrTarget[] = [];
  const dirs: [string, TreeEntry][] = [];
  for (const e of listing.entries) {
    const p = e.path === '' ? dest : join(dest, e.path);
    const own = await placeEntry(e, p, objectPath, mode);
    if (e.type === 'dir') dirs.push([p, e]);
    if (e.xattrs && (own || e.type === 'dir')) xattrs.push({ path: p, xattrs: e.xattrs });
  }
  // Deepest first: a dir's mtime is final once nothing more is created in it.
  for (const [p, e] of dirs.reverse()) await applyOwnerMode(p, e);
  await applyXattrs(xattrs);
}
