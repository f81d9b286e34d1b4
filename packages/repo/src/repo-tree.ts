/**
 * Tree objects of a repository: the listing of each published tree (`trees/<digest>.tree.zst`)
 * and the content of every file object it names (`objects/<2 hex>/<62 hex>.zst`), so devices
 * with deployments fetch only the files they lack. Both are content-addressed and verified on
 * the device against the tree digest the signed manifest carries: like chunks, they are not TUF
 * targets. Publishing scans a source directory (the rootfs, or a read-only mount of the image)
 * and refuses it unless it is the signed tree.
 */
import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { constants, createWriteStream } from 'node:fs';
import {
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  writeFile,
  type FileHandle,
} from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import {
  constants as zlib,
  createZstdCompress,
  zstdCompress,
  zstdCompressSync,
  zstdDecompressSync,
} from 'node:zlib';
import {
  encodeTree,
  FerryError,
  ObjectHasher,
  parseEnvelope,
  parseTree,
  pathExists,
  scanTree,
  TREE_LIMITS,
  treeDigest,
  validateManifest,
  withContext,
  writeFileAtomic,
  type Manifest,
  type TreeEntry,
  type TreeListing,
} from '@ferry/core';
import { OBJECTS_DIR, objectFile, treeDeltaFile, treeFile } from './repo-layout.ts';
import { listReleases } from './release.ts';
import type { RepoState } from './repo-state.ts';
import { readTargetFile } from './target-file.ts';

/** zstd level of stored objects and listings (measured in docs/formats/repository.md). */
export const OBJECT_ZSTD_LEVEL = 10;

/** A tree checked against the manifest, ready to store. */
export interface PreparedTree {
  image: string;
  dir: string;
  digest: string;
  bytes: Buffer;
  listing: TreeListing;
}

/** What storing one tree did. */
export interface TreePublishResult {
  image: string;
  digest: string;
  /** Whether the listing file was new. */
  treeAdded: boolean;
  /** Distinct objects of the tree, those newly stored, their content and stored bytes. */
  objects: { total: number; added: number; addedBytes: number; storedBytes: number };
}

/**
 * Scans each source directory (image name -> dir) and checks it against the tree the manifest
 * signs for that image. Throws USAGE for an image the manifest lacks or that has no `tree`,
 * REPO_TREE_MISMATCH when the scanned digest differs. Writes nothing.
 */
export async function prepareTrees(
  manifest: Manifest,
  sources: Record<string, string>,
): Promise<PreparedTree[]> {
  const out: PreparedTree[] = [];
  for (const [image, dir] of Object.entries(sources)) {
    const signed = manifest.images[image];
    if (!signed) throw new FerryError('USAGE', `the release has no image ${image}`);
    if (!signed.tree)
      throw new FerryError('USAGE', `the manifest signs no tree for image ${image}`);
    const listing = await scanTree(dir).catch((e: unknown) => {
      throw withContext(`scanning ${dir}`, e);
    });
    const bytes = encodeTree(listing);
    const digest = treeDigest(bytes);
    if (digest !== signed.tree.sha256)
      throw new FerryError(
        'REPO_TREE_MISMATCH',
        `${dir} has tree ${digest}, the manifest signs ${signed.tree.sha256} for ${image}`,
      );
    out.push({ image, dir, digest, bytes, listing });
  }
  return out;
}

/** The first path of each object id in the listing. */
export function objectPaths(listing: TreeListing): Map<string, TreeEntry> {
  const map = new Map<string, TreeEntry>();
  for (const e of listing.entries)
    if (e.type === 'file' && !map.has(e.object!)) map.set(e.object!, e);
  return map;
}

/** Opens the regular file `rel` below `root` through directory fds, following no symlink. */
async function openBeneath(root: string, rel: string): Promise<FileHandle> {
  const { O_RDONLY, O_NOFOLLOW, O_NONBLOCK, O_DIRECTORY } = constants;
  const parts = rel.split('/');
  let cur = await open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  try {
    for (const [i, name] of parts.entries()) {
      const flags = O_RDONLY | O_NOFOLLOW | (i === parts.length - 1 ? O_NONBLOCK : O_DIRECTORY);
      const next = await open(`/proc/self/fd/${cur.fd}/${name}`, flags);
      await cur.close();
      cur = next;
    }
    if (!(await cur.stat()).isFile()) throw new FerryError('REPO_TREE_MISMATCH', `${rel} changed`);
    return cur;
  } catch (e) {
    await cur.close();
    throw e;
  }
}

/** An object compressed to a temp file beside its final name, not yet renamed. */
interface Staged {
  tmp: string;
  path: string;
  bytes: number;
}

/**
 * Compresses one object to a temp file, hashing it as it is read: the source dir may have
 * changed since the scan, so content that no longer hashes to its id is refused.
 */
async function stageObject(repo: string, src: string, id: string, e: TreeEntry, level: number) {
  const path = objectFile(repo, id);
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${dirname(path)}/.tmp-${id.slice(2, 18)}-${randomBytes(6).toString('hex')}`;
  const fh = await openBeneath(src, e.path);
  try {
    const h = new ObjectHasher({ ...e, size: e.size! });
    const bytes = e.size! <= SMALL ? await compressSmall(fh, h, e, level, tmp) : 0;
    if (e.size! > SMALL) {
      const hash = async function* (chunks: AsyncIterable<Buffer>) {
        for await (const c of chunks) {
          // Attack stopped: a file growing without end after the scan.
          if (h.bytes + c.length > e.size!) break;
          h.update(c);
          yield c;
        }
      };
      const zstd = createZstdCompress({ params: zstdParams(level), pledgedSrcSize: e.size! });
      await pipeline(
        fh.createReadStream({ autoClose: false }),
        hash,
        zstd,
        createWriteStream(tmp, { flags: 'wx', mode: 0o644 }),
      );
    }
    if (h.bytes !== e.size || h.objectId() !== id)
      throw new FerryError('REPO_TREE_MISMATCH', `${e.path} changed after it was scanned`);
    return { tmp, path, bytes: bytes || (await stat(tmp)).size };
  } catch (err) {
    await rm(tmp, { force: true });
    throw withContext(`storing object ${id} (${e.path})`, err);
  } finally {
    await fh.close();
  }
}

/** Files up to this size are compressed in one call (a stream per small file costs ~5 ms). */
const SMALL = 8 << 20;
const zstdParams = (level: number) => ({ [zlib.ZSTD_c_compressionLevel]: level });
const zstdOnce = promisify(zstdCompress);

/** Reads a small file whole (at most its listed size), hashes and compresses it into `tmp`. */
async function compressSmall(
  fh: FileHandle,
  h: ObjectHasher,
  e: TreeEntry,
  level: number,
  tmp: string,
): Promise<number> {
  const buf = Buffer.alloc(e.size!);
  const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
  h.update(buf.subarray(0, bytesRead));
  const frame = await zstdOnce(buf.subarray(0, bytesRead), {
    params: zstdParams(level),
    pledgedSrcSize: bytesRead,
  });
  await writeFile(tmp, frame, { flag: 'wx', mode: 0o644 });
  return frame.length;
}

/** Flushes the filesystem holding `path` (one syncfs instead of an fsync per object). */
async function syncFs(path: string): Promise<void> {
  await new Promise<void>((resolve, reject) =>
    execFile('sync', ['-f', path], (err) =>
      err ? reject(new FerryError('IO', `sync -f ${path}: ${err.message}`)) : resolve(),
    ),
  );
}

/** Runs `fn` over `items`, `n` at a time. */
async function pool<T>(items: T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
}

/**
 * Stores the objects of a prepared tree the repository lacks, then its listing (objects first:
 * a stored listing never names a missing object). Skips what is present, so a second release
 * adds only its new objects.
 *
 * @example
 * const [tree] = await prepareTrees(manifest, { rootfs: '/srv/build/rootfs' });
 * const r = await storeTree('/srv/ferry', tree);
 * console.log(`${r.objects.added} of ${r.objects.total} objects were new`);
 */
export async function storeTree(
  repo: string,
  t: PreparedTree,
  level = OBJECT_ZSTD_LEVEL,
): Promise<TreePublishResult> {
  const objects = objectPaths(t.listing);
  const todo: [string, TreeEntry][] = [];
  for (const [id, e] of objects) if (!(await pathExists(objectFile(repo, id)))) todo.push([id, e]);
  const r = { total: objects.size, added: 0, addedBytes: 0, storedBytes: 0 };
  const staged: Staged[] = [];
  try {
    await pool(todo, Math.max(2, availableParallelism()), async ([id, e]) => {
      staged.push(await stageObject(repo, t.dir, id, e, level));
      r.added++;
      r.addedBytes += e.size!;
    });
    // Invariant: an object's final name only ever appears with complete, synced contents.
    if (staged.length > 0) await syncFs(join(repo, OBJECTS_DIR));
    for (const s of staged) {
      await rename(s.tmp, s.path);
      r.storedBytes += s.bytes;
    }
  } finally {
    for (const s of staged) await rm(s.tmp, { force: true });
  }
  const path = treeFile(repo, t.digest);
  const treeAdded = !(await pathExists(path));
  if (treeAdded) {
    await mkdir(dirname(path), { recursive: true });
    await writeFileAtomic(
      path,
      zstdCompressSync(t.bytes, { params: { [zlib.ZSTD_c_compressionLevel]: level } }),
    );
  }
  return { image: t.image, digest: t.digest, treeAdded, objects: r };
}

/** Listing deltas made per published tree: from the newest kept trees only. */
export const TREE_DELTA_BASES = 5;

/**
 * Writes `trees/<to>.from-<base>.zst` for each of `bases` (tree digests the repository stores;
 * the newest first, at most TREE_DELTA_BASES): the listing compressed with the base listing as
 * zstd dictionary. Existing deltas are kept. Returns how many were written.
 */
export async function storeTreeDeltas(
  repo: string,
  to: { digest: string; bytes: Buffer },
  bases: string[],
  level = OBJECT_ZSTD_LEVEL,
): Promise<number> {
  let n = 0;
  for (const from of bases.filter((b) => b !== to.digest).slice(0, TREE_DELTA_BASES)) {
    const path = treeDeltaFile(repo, to.digest, from);
    if (await pathExists(path)) continue;
    const base = await readStoredTree(repo, from);
    if (!base) continue;
    const frame = zstdCompressSync(to.bytes, {
      dictionary: encodeTree(base),
      params: { [zlib.ZSTD_c_compressionLevel]: level },
    });
    await writeFileAtomic(path, frame);
    n++;
  }
  return n;
}

/**
 * The listing stored under `digest`, or undefined if none is (a release published without a
 * tree source). Throws REPO_OBJECT_CORRUPT if it does not decompress within the listing size
 * limit, hash to its name, or parse.
 */
export async function readStoredTree(
  repo: string,
  digest: string,
): Promise<TreeListing | undefined> {
  const path = treeFile(repo, digest);
  let bytes: Buffer;
  try {
    const st = await stat(path);
    if (st.size > TREE_LIMITS.maxBytes) throw new Error(`${st.size} bytes`);
    bytes = zstdDecompressSync(await readFile(path), { maxOutputLength: TREE_LIMITS.maxBytes });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new FerryError('REPO_OBJECT_CORRUPT', `tree ${digest}: ${(e as Error).message}`, {
      cause: e,
    });
  }
  if (treeDigest(bytes) !== digest)
    throw new FerryError('REPO_OBJECT_CORRUPT', `tree ${digest} does not hash to its name`);
  try {
    return parseTree(bytes);
  } catch (e) {
    throw new FerryError('REPO_OBJECT_CORRUPT', `tree ${digest}: ${(e as Error).message}`, {
      cause: e,
    });
  }
}

/**
 * The tree digests the manifests of every release in every channel sign. Each manifest is read
 * back from its target file and checked against its signed hash (REPO_TARGET_MISMATCH).
 */
export async function releaseTreeDigests(state: RepoState): Promise<Set<string>> {
  const digests = new Set<string>();
  const seen = new Set<string>();
  for (const release of listReleases(state)) {
    const t = state.roles.get(`channel-${release.channel}`)!.signed.targets[release.paths[0]!]!;
    if (seen.has(t.hashes.sha256!)) continue;
    seen.add(t.hashes.sha256!);
    const m = validateManifest(parseEnvelope(await readTargetFile(state.dir, t)).signed);
    for (const img of Object.values(m.images)) if (img.tree) digests.add(img.tree.sha256);
  }
  return digests;
}

/**
 * The tree digests of `image` in the kept releases of `compatible`, newest release first: the
 * bases a device updating to a new release most likely holds.
 */
export async function treeDeltaBases(
  state: RepoState,
  compatible: string,
  image: string,
): Promise<string[]> {
  const releases = listReleases(state)
    .filter((r) => r.compatible === compatible)
    .sort((a, b) => b.releaseCounter - a.releaseCounter);
  const out: string[] = [];
  for (const release of releases) {
    const t = state.roles.get(`channel-${release.channel}`)!.signed.targets[release.paths[0]!]!;
    const m = validateManifest(parseEnvelope(await readTargetFile(state.dir, t)).signed);
    const d = m.images[image]?.tree?.sha256;
    if (d && !out.includes(d)) out.push(d);
  }
  return out;
}

/** Yields the id of every stored object; ignores foreign and temporary files. */
export async function* listObjects(repo: string): AsyncGenerator<string> {
  const root = `${repo}/${OBJECTS_DIR}`;
  const subdirs = await readdir(root).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return [];
    throw e;
  });
  for (const sub of subdirs.filter((s) => /^[0-9a-f]{2}$/.test(s)))
    for (const name of await readdir(`${root}/${sub}`))
      if (/^[0-9a-f]{62}\.zst$/.test(name)) yield sub + name.slice(0, 62);
}

/**
 * Stores a listing and its objects without a manifest to check them against (benchmarks,
 * tools that verify the tree otherwise). Returns the stored listing's and every object's
 * compressed size, what a device lacking them would download.
 *
 * @example
 * const p = await publishTreeObjects('/srv/ferry', await scanTree(dir), dir);
 */
export async function publishTreeObjects(repo: string, listing: TreeListing, dir: string) {
  const bytes = encodeTree(listing);
  const digest = treeDigest(bytes);
  const result = await storeTree(repo, { image: '', dir, digest, bytes, listing });
  const objectBytes = new Map<string, number>();
  for (const id of objectPaths(listing).keys())
    objectBytes.set(id, (await stat(objectFile(repo, id))).size);
  return { ...result, listingBytes: (await stat(treeFile(repo, digest))).size, objectBytes };
}
