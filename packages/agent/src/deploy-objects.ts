/**
 * File objects of the deployment store: objects/<2 hex>/<62 hex>, each a regular file carrying
 * the mode, owner, xattrs and mtime 0 its id covers, so checkouts can hardlink it. An object is
 * hashed while it is written to objects/tmp/ and renamed into place only when its id matches:
 * what the store holds under an id always hashes to that id.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, chown, mkdir, open, rename, rm, utimes, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import {
  FerryError,
  ObjectHasher,
  pathExists,
  type TreeEntry,
  type TreeListing,
} from '@ferry/core';
import { applyXattrs, syncFs } from './deploy-fs.ts';

/**
 * Where importObjects reads objects from: a network fetcher, a mounted image, another store.
 * Whatever it returns is untrusted: it is size-bounded and hashed before it is kept.
 */
export interface ObjectSource {
  /** The content of `objectId`; `entry` is one listing entry that names it. */
  open(objectId: string, entry: TreeEntry): Promise<Readable | AsyncIterable<Uint8Array>>;
}

const { O_RDONLY, O_NOFOLLOW, O_NONBLOCK, O_DIRECTORY } = constants;
const BATCH = 256;

/** objects/<2 hex>/<62 hex> under the store dir. */
export function objectPath(storeDir: string, id: string): string {
  return join(storeDir, 'objects', id.slice(0, 2), id.slice(2));
}

const metaKey = (e: TreeEntry): string =>
  JSON.stringify([e.mode, e.uid, e.gid, e.size, Object.entries(e.xattrs ?? {}).sort()]);

/**
 * The first file entry naming each object, in listing order. Refuses (TREE_INVALID) a listing
 * that gives one object two sets of metadata: hardlinks to it could not carry both.
 */
export function objectEntries(listing: TreeListing): Map<string, TreeEntry> {
  const map = new Map<string, TreeEntry>();
  for (const e of listing.entries) {
    if (e.type !== 'file') continue;
    const first = map.get(e.object!);
    if (!first) map.set(e.object!, e);
    else if (metaKey(first) !== metaKey(e))
      throw new FerryError('TREE_INVALID', `${e.path}: object ${e.object} with other metadata`);
  }
  return map;
}

/** Opens `rel` below `dir` through directory fds, never following a symlink on the way. */
async function openBeneath(dir: string, rel: string): Promise<FileHandle> {
  const parts = rel.split('/');
  let cur = await open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  try {
    for (const [i, name] of parts.entries()) {
      const last = i === parts.length - 1;
      const flags = O_RDONLY | O_NOFOLLOW | (last ? O_NONBLOCK : O_DIRECTORY);
      const next = await open(`/proc/self/fd/${cur.fd}/${name}`, flags);
      await cur.close();
      cur = next;
    }
    if (!(await cur.stat()).isFile()) throw new FerryError('IO', `${rel} is not a regular file`);
    return cur;
  } catch (e) {
    await cur.close();
    throw e;
  }
}

/**
 * Reads objects from a tree on disk (a staging dir, a mounted image) by the entry's path,
 * without following symlinks anywhere on the path.
 *
 * @example
 * await store.importObjects(listing, new DirectoryObjectSource('/mnt/image', listing));
 */
export class DirectoryObjectSource implements ObjectSource {
  readonly dir: string;
  readonly #paths: Map<string, string>;

  constructor(dir: string, listing: TreeListing) {
    this.dir = dir;
    this.#paths = new Map([...objectEntries(listing)].map(([id, e]) => [id, e.path]));
  }

  async open(objectId: string, entry: TreeEntry): Promise<Readable> {
    const path = entry.object === objectId ? entry.path : this.#paths.get(objectId);
    if (path === undefined)
      throw new FerryError('DEPLOY_OBJECT_MISSING', `no file has ${objectId}`);
    const fh = await openBeneath(this.dir, path);
    return fh.createReadStream();
  }
}

/** Fetches one object into `tmp`, hashing as it goes; nothing is left behind on failure. */
async function fetchObject(
  id: string,
  e: TreeEntry,
  source: ObjectSource,
  tmp: string,
): Promise<void> {
  const fh = await open(tmp, 'wx', 0o600);
  try {
    const h = new ObjectHasher({ ...e, size: e.size! });
    const stream = await source.open(id, e);
    for await (const chunk of stream as AsyncIterable<Uint8Array>) {
      // Attack stopped: endless data; the size comes from the signed listing.
      if (h.bytes + chunk.length > e.size!)
        throw new FerryError('DEPLOY_OBJECT_MISMATCH', `${e.path}: more than ${e.size} bytes`);
      h.update(chunk);
      await fh.write(chunk);
    }
    if (h.bytes !== e.size || h.objectId() !== id)
      throw new FerryError('DEPLOY_OBJECT_MISMATCH', `${e.path}: content does not hash to ${id}`);
    await fh.close();
    await chown(tmp, e.uid, e.gid);
    // After chown, which clears setuid/setgid bits.
    await chmod(tmp, e.mode);
  } catch (err) {
    await fh.close().catch(() => {});
    await rm(tmp, { force: true });
    throw err;
  }
}

/** The object ids of `listing` the store at `storeDir` lacks, in listing order. */
export async function missingObjectIds(storeDir: string, listing: TreeListing): Promise<string[]> {
  const out: string[] = [];
  for (const id of objectEntries(listing).keys())
    if (!(await pathExists(objectPath(storeDir, id)))) out.push(id);
  return out;
}

async function importBatch(
  storeDir: string,
  batch: [string, TreeEntry][],
  source: ObjectSource,
): Promise<void> {
  const tmpDir = join(storeDir, 'objects', 'tmp');
  const tmps: string[] = [];
  try {
    for (const [id, e] of batch) {
      const tmp = join(tmpDir, `${id.slice(0, 16)}-${randomBytes(6).toString('hex')}`);
      tmps.push(tmp);
      await fetchObject(id, e, source, tmp);
    }
    const withX = batch.flatMap(([, e], i) =>
      e.xattrs ? [{ path: tmps[i]!, xattrs: e.xattrs }] : [],
    );
    await applyXattrs(withX);
    for (const t of tmps) await utimes(t, 0, 0);
    // Invariant: an object is renamed into place only after its data is on disk.
    await syncFs(tmpDir);
    for (const [i, [id]] of batch.entries()) {
      await mkdir(join(storeDir, 'objects', id.slice(0, 2)), { recursive: true, mode: 0o700 });
      await rename(tmps[i]!, objectPath(storeDir, id));
    }
  } finally {
    for (const t of tmps) await rm(t, { force: true });
  }
}

/** Imports every object of `listing` the store lacks; returns how many and their bytes. */
export async function importMissing(
  storeDir: string,
  listing: TreeListing,
  source: ObjectSource,
): Promise<{ objects: number; bytes: number }> {
  const entries = objectEntries(listing);
  const todo = (await missingObjectIds(storeDir, listing)).map(
    (id) => [id, entries.get(id)!] as [string, TreeEntry],
  );
  for (let i = 0; i < todo.length; i += BATCH)
    await importBatch(storeDir, todo.slice(i, i + BATCH), source);
  if (todo.length > 0) await syncFs(join(storeDir, 'objects'));
  return { objects: todo.length, bytes: todo.reduce((n, [, e]) => n + e.size!, 0) };
}
