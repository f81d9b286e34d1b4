/**
 * Space accounting of the deployment store: what a new tree will need (checked against statfs
 * before anything is written) and what the store actually uses compared with full copies.
 */
import { lstat, readdir, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { FerryError, type TreeListing } from '@ferry/core';
import type { CheckoutMode } from './deploy-checkout.ts';
import { objectEntries } from './deploy-objects.ts';

/** What {@link planSpace} and preflight report. */
export interface SpaceNeeds {
  /** Bytes the tree needs: missing objects, dirs, long symlinks, copies, the listing. */
  neededBytes: number;
  availableBytes: number;
  /** New inodes: missing objects, dirs, symlinks, nodes (plus files, unless hardlinked). */
  neededInodes: number;
  /** Free inodes; null where the filesystem allocates them on demand (btrfs reports 0 of 0). */
  availableInodes: number | null;
  missingObjects: number;
}

/** Targets up to this length live in the inode on ext4 (fast symlinks) and need no block. */
const FAST_SYMLINK = 60;
/** Slack for the listing, deployments.json and directory growth in the store itself. */
const SLACK = 1 << 20;

const roundUp = (n: number, b: number): number => Math.ceil(n / b) * b;

/**
 * Pure: the bytes and inodes `listing` needs given the ids still missing and the block size.
 * Every file rounds up to whole blocks, as the filesystem allocates them.
 */
export function estimateNeeds(
  listing: TreeListing,
  missing: string[],
  blockSize: number,
  mode: CheckoutMode,
): { bytes: number; inodes: number } {
  const objects = objectEntries(listing);
  let bytes = SLACK;
  let inodes = missing.length;
  for (const id of missing) bytes += roundUp(objects.get(id)!.size!, blockSize);
  for (const e of listing.entries) {
    if (e.type === 'file') {
      if (mode !== 'hardlink') inodes++;
      if (mode === 'copy') bytes += roundUp(e.size!, blockSize);
      continue;
    }
    inodes++;
    if (e.type === 'dir' || (e.type === 'symlink' && e.target!.length > FAST_SYMLINK))
      bytes += blockSize;
  }
  return { bytes, inodes };
}

/** Measures the store's filesystem and refuses (DEPLOY_NO_SPACE) when the tree does not fit. */
export async function checkSpace(
  storeDir: string,
  listing: TreeListing,
  missing: string[],
  mode: CheckoutMode,
): Promise<SpaceNeeds> {
  const fs = await statfs(storeDir);
  const need = estimateNeeds(listing, missing, fs.bsize, mode);
  const r: SpaceNeeds = {
    neededBytes: need.bytes,
    availableBytes: fs.bavail * fs.bsize,
    neededInodes: need.inodes,
    availableInodes: fs.files === 0 ? null : fs.ffree,
    missingObjects: missing.length,
  };
  if (r.neededBytes > r.availableBytes)
    throw new FerryError(
      'DEPLOY_NO_SPACE',
      `the tree needs ${r.neededBytes} bytes, the store's filesystem has ${r.availableBytes} free`,
    );
  if (r.availableInodes !== null && r.neededInodes > r.availableInodes)
    throw new FerryError(
      'DEPLOY_NO_SPACE',
      `the tree needs ${r.neededInodes} inodes, the store's filesystem has ${r.availableInodes} free`,
    );
  return r;
}

/** What {@link storeUsage} reports. */
export interface StoreUsage {
  /** Bytes the store's files occupy on disk (allocated blocks), each inode counted once. */
  storeBytes: number;
  /** Bytes in objects alone, each counted once. */
  objectBytes: number;
  objects: number;
  /** Sum over deployments of their apparent size (file sizes + symlink targets): full copies. */
  apparentBytes: number;
}

async function walkUnique(path: string, seen: Set<string>): Promise<number> {
  const st = await lstat(path, { bigint: true });
  const key = `${st.dev}:${st.ino}`;
  let n = seen.has(key) ? 0 : Number(st.blocks) * 512;
  seen.add(key);
  if (st.isDirectory())
    for (const c of await readdir(path)) n += await walkUnique(join(path, c), seen);
  return n;
}

/** Measures the store at `storeDir` whose deployments have the listings `trees`. */
export async function storeUsage(storeDir: string, trees: TreeListing[]): Promise<StoreUsage> {
  const objSeen = new Set<string>();
  const objectBytes = await walkUnique(join(storeDir, 'objects'), objSeen);
  const storeBytes = await walkUnique(storeDir, new Set());
  let apparentBytes = 0;
  for (const t of trees)
    for (const e of t.entries)
      apparentBytes += e.type === 'file' ? e.size! : e.type === 'symlink' ? e.target!.length : 0;
  const objects = (
    await readdir(join(storeDir, 'objects'), { recursive: true, withFileTypes: true })
  ).filter((d) => d.isFile() && !d.parentPath.endsWith('/tmp')).length;
  return { storeBytes, objectBytes, objects, apparentBytes };
}
