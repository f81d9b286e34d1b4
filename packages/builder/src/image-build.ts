/**
 * `ferry image build`: a rootfs (directory, tarball, OCI layout, docker-archive) to a
 * reproducible squashfs or erofs image. Steps: check options, detect the input, stage it (safe
 * extraction, layers in order), derive the UUID, run the mkfs tool, hash the result.
 */
import { createHash } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import {
  mkdir,
  mkdtemp,
  open,
  realpath,
  rename,
  rm,
  stat,
  type FileHandle,
} from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import {
  encodeTree,
  FerryError,
  ObjectHasher,
  scanTree,
  type TreeListing,
  treeDigest as listingDigest,
  withContext,
  writeFileAtomic,
} from '@ferry/core';
import { fileBlob, decodedStream, sniffCompression, verifyBlob } from './blob.ts';
import { detectInputKind, openBlobSource, type InputKind } from './image-input.ts';
import { imageTool, type ImageFormat } from './image-tool.ts';
import { applyLayer } from './layers.ts';
import { parsePlatform, resolveDockerArchive, resolveOciLayout, type LayerRef } from './oci.ts';
import { runTool } from './spawn.ts';
import { StagingTree } from './tar-extract.ts';
import { readTar } from './tar-reader.ts';
import { treeDigest, uuidFromDigest } from './tree-digest.ts';

/** A progress event of a build. */
export interface BuildProgress {
  phase: 'extract' | 'layer' | 'mkfs';
  done: number;
  total?: number;
  detail?: string;
}

/** Options of {@link buildImage}. */
export interface BuildImageOptions {
  from: string;
  format: ImageFormat;
  out: string;
  /** Timestamp of every inode and the superblock; default $SOURCE_DATE_EPOCH, else 0. */
  sourceDateEpoch?: number;
  /** squashfs: gzip (default), xz, lzo, lz4, zstd; erofs: lz4hc (default), lz4, none. */
  compression?: string;
  /** OCI index selection, default linux/amd64. */
  platform?: string;
  /**
   * Also write the tree listing (docs/formats/tree.md) of the filesystem in the image here: the
   * listing a device checks a deployment against. Default: none.
   */
  treeOut?: string;
  /** Where the private staging tree goes (default: next to `out`); removed afterwards. */
  workDir?: string;
  onProgress?: (e: BuildProgress) => void;
}

/** What {@link buildImage} produced. */
export interface BuiltImage {
  path: string;
  format: ImageFormat;
  inputKind: InputKind;
  size: number;
  sha256: string;
  layers?: number;
  /** The tree listing written to `treeOut`: its digest, length and entry count. */
  tree?: { path: string; sha256: string; size: number; entries: number };
}

function epochOf(opt: number | undefined): number {
  const env = process.env.SOURCE_DATE_EPOCH;
  const v = opt ?? (env !== undefined && env !== '' ? Number(env) : 0);
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff)
    throw new FerryError('USAGE', `SOURCE_DATE_EPOCH must be an integer in 0..2^32-1, not ${v}`);
  return v;
}

function inside(child: string, parent: string): boolean {
  return child === parent || child.startsWith(parent.endsWith(sep) ? parent : parent + sep);
}

async function stage(kind: InputKind, opts: BuildImageOptions, work: string) {
  const tree = new StagingTree(join(work, 'rootfs'));
  tree.init();
  let layers: LayerRef[];
  if (kind === 'tar') layers = [{ blob: await fileBlob(opts.from), compression: 'sniff' }];
  else {
    await mkdir(join(work, 'blobs'), { mode: 0o700 });
    const src = await openBlobSource(opts.from, join(work, 'blobs'));
    const platform = parsePlatform(opts.platform ?? 'linux/amd64');
    const resolveLayers = kind === 'oci-layout' ? resolveOciLayout : resolveDockerArchive;
    layers = await resolveLayers(src, platform);
  }
  for (const [i, layer] of layers.entries()) {
    const { blob } = layer;
    opts.onProgress?.({ phase: 'layer', done: i, total: layers.length, detail: blob.name });
    try {
      if (layer.digest) await verifyBlob(blob, layer.digest, layer.size);
      const comp = layer.compression === 'sniff' ? await sniffCompression(blob) : layer.compression;
      await applyLayer(tree, readTar(decodedStream(blob, comp)), (n, path) =>
        opts.onProgress?.({ phase: 'extract', done: n, detail: path }),
      );
    } catch (e) {
      throw withContext(kind === 'tar' ? blob.name : `layer ${i + 1} (${blob.name})`, e);
    }
  }
  opts.onProgress?.({ phase: 'layer', done: layers.length, total: layers.length });
  return { root: tree.root, layers: layers.length };
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path)) h.update(c as Buffer);
  return h.digest('hex');
}

/**
 * The xattrs each format stores. mksquashfs 4.5 keeps only the user, trusted and security
 * namespaces (it drops POSIX ACLs with "Unrecognised xattr prefix"); mkfs.erofs 1.5 also keeps
 * the two ACL attributes.
 */
const STORED_XATTRS: Record<ImageFormat, RegExp> = {
  squashfs: /^(user|trusted|security)\./,
  erofs: /^((user|trusted|security)\.|system\.posix_acl_(access|default)$)/,
};

/** Opens the regular file `rel` below `root` through directory fds, following no symlink. */
async function openBeneath(root: string, rel: string): Promise<FileHandle> {
  const { O_RDONLY, O_NOFOLLOW, O_NONBLOCK, O_DIRECTORY } = constants;
  let cur = await open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  try {
    for (const [i, name] of rel.split('/').entries()) {
      const last = i === rel.split('/').length - 1;
      const next = await open(
        `/proc/self/fd/${cur.fd}/${name}`,
        O_RDONLY | O_NOFOLLOW | (last ? O_NONBLOCK : O_DIRECTORY),
      );
      await cur.close();
      cur = next;
    }
    return cur;
  } catch (e) {
    await cur.close();
    throw e;
  }
}

/** Drops the xattrs `format` does not store; files losing some get their object id again. */
async function matchFormat(root: string, listing: TreeListing, format: ImageFormat) {
  for (const e of listing.entries) {
    if (!e.xattrs) continue;
    const kept = Object.entries(e.xattrs).filter(([n]) => STORED_XATTRS[format].test(n));
    if (kept.length === Object.keys(e.xattrs).length) continue;
    if (kept.length > 0) e.xattrs = Object.fromEntries(kept);
    else delete e.xattrs;
    if (e.type !== 'file') continue;
    const fh = await openBeneath(root, e.path);
    try {
      const h = new ObjectHasher({ ...e, size: e.size! });
      for await (const c of fh.createReadStream({ autoClose: false })) h.update(c as Buffer);
      if (h.bytes !== e.size)
        throw new FerryError('TREE_INVALID', `${e.path} changed while the image was built`);
      e.object = h.objectId();
    } finally {
      await fh.close();
    }
  }
}

/**
 * Lists the tree the tool packed, as the mounted image shows it: mksquashfs and mkfs.erofs run
 * without uid/gid or mode remapping and keep the root dir's own metadata, so the listing of the
 * source is the image's, but for the xattrs the format cannot store.
 */
async function writeListing(
  source: string,
  format: ImageFormat,
  out: string,
): Promise<BuiltImage['tree']> {
  const listing = await scanTree(source);
  await matchFormat(source, listing, format);
  const bytes = encodeTree(listing);
  await writeFileAtomic(out, bytes);
  return {
    path: out,
    sha256: listingDigest(bytes),
    size: bytes.length,
    entries: listing.entries.length,
  };
}

async function checkPlaces(opts: BuildImageOptions, kind: InputKind): Promise<void> {
  if (kind !== 'directory') return;
  const from = await realpath(opts.from);
  const outDir = await realpath(dirname(resolve(opts.out)));
  const work = opts.workDir ? await realpath(opts.workDir) : outDir;
  const treeDir = opts.treeOut ? await realpath(dirname(resolve(opts.treeOut))) : outDir;
  if (inside(outDir, from) || inside(work, from) || inside(treeDir, from))
    throw new FerryError(
      'USAGE',
      'the output, tree listing and work directory must be outside the input tree',
    );
}

/**
 * Builds a reproducible squashfs or erofs image: the same input and options give the same bytes.
 *
 * @example
 * const img = await buildImage({ from: 'rootfs.tar.zst', format: 'squashfs', out: 'root.sqfs' });
 * console.log(img.sha256, img.size);
 */
export async function buildImage(opts: BuildImageOptions): Promise<BuiltImage> {
  const [tool, compression] = imageTool(opts.format, opts.compression);
  const epoch = epochOf(opts.sourceDateEpoch);
  if (opts.platform !== undefined) parsePlatform(opts.platform);
  const inputKind = await detectInputKind(opts.from);
  await checkPlaces(opts, inputKind);
  const work = await mkdtemp(join(opts.workDir ?? dirname(resolve(opts.out)), '.ferry-build-'));
  const tmp = `${resolve(opts.out)}.ferry-tmp-${process.pid}`;
  try {
    const staged = inputKind === 'directory' ? null : await stage(inputKind, opts, work);
    const source = staged?.root ?? opts.from;
    const salt = `${opts.format}\0${compression}\0${epoch}`;
    const uuid = tool.needsUuid ? uuidFromDigest(await treeDigest(source, salt)) : '';
    opts.onProgress?.({ phase: 'mkfs', done: 0, total: 1, detail: tool.command });
    // The tools take their times from flags; mksquashfs refuses SOURCE_DATE_EPOCH with them.
    const env = { ...process.env };
    delete env.SOURCE_DATE_EPOCH;
    await rm(tmp, { force: true });
    await runTool(tool.command, tool.args({ source, out: tmp, epoch, compression, uuid }), { env });
    await rename(tmp, opts.out);
    opts.onProgress?.({ phase: 'mkfs', done: 1, total: 1, detail: tool.command });
    const size = (await stat(opts.out)).size;
    const built: BuiltImage = { path: opts.out, format: opts.format, inputKind, size, sha256: '' };
    built.sha256 = await sha256File(opts.out);
    if (staged) built.layers = staged.layers;
    if (opts.treeOut !== undefined)
      built.tree = await writeListing(source, opts.format, opts.treeOut);
    return built;
  } catch (e) {
    await rm(tmp, { force: true });
    throw withContext(`building ${opts.format} image from ${opts.from}`, e);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
