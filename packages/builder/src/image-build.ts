/**
 * `ferry image build`: a rootfs (directory, tarball, OCI layout, docker-archive) to a
 * reproducible squashfs or erofs image. Steps: check options, detect the input, stage it (safe
 * extraction, layers in order), derive the UUID, run the mkfs tool, hash the result.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, realpath, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { FerryError, withContext } from '@ferry/core';
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

async function checkPlaces(opts: BuildImageOptions, kind: InputKind): Promise<void> {
  if (kind !== 'directory') return;
  const from = await realpath(opts.from);
  const outDir = await realpath(dirname(resolve(opts.out)));
  const work = opts.workDir ? await realpath(opts.workDir) : outDir;
  if (inside(outDir, from) || inside(work, from))
    throw new FerryError('USAGE', 'the output and work directory must be outside the input tree');
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
    return built;
  } catch (e) {
    await rm(tmp, { force: true });
    throw withContext(`building ${opts.format} image from ${opts.from}`, e);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
