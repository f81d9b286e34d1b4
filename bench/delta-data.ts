/**
 * Inputs of the delta benchmark: the Debian trees of `npm run bench:data` and Ferry images built
 * from them, cached under .cache/bench/delta keyed by the tree's stamp and the build options, so a
 * second run rebuilds nothing.
 */
import { readFile, mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildImage } from '@ferry/builder';
import { timeIt } from './lib.ts';

/** Repository root, the bench data and this benchmark's cache. */
export const REPO = join(import.meta.dirname, '..');
export const DATA = join(REPO, '.cache', 'bench-data');
export const CACHE = join(REPO, '.cache', 'bench', 'delta');
/** Fixed inode and superblock time of every image (reproducible builds). */
export const EPOCH = 1700000000;

/** A Ferry image option: format plus compression, as `ferry image build` takes them. */
export interface ImageVariant {
  name: string;
  format: 'squashfs' | 'erofs';
  compression: string;
}

/**
 * squashfs gzip (the builder default), uncompressed erofs, and uncompressed squashfs
 * (`--compression none`: the builder's mksquashfs flags plus -noI -noD -noF -noX).
 */
export const IMAGE_VARIANTS: ImageVariant[] = [
  { name: 'sqfs-gzip', format: 'squashfs', compression: 'gzip' },
  { name: 'erofs-none', format: 'erofs', compression: 'none' },
  { name: 'sqfs-none', format: 'squashfs', compression: 'none' },
];

/** Where tree `v` (v1, v2, v3) lives. */
export function treePath(v: string): string {
  return join(DATA, `rootfs-${v}`);
}

/** The recipe stamp make-data.sh wrote for tree `v` (throws if the tree was never built). */
export async function treeStamp(v: string): Promise<string> {
  return readFile(join(DATA, `.rootfs-${v}.stamp`), 'utf8');
}

/** Reads `key` next to `path` and says whether it matches (a cached artefact is still valid). */
export async function cached(path: string, key: string): Promise<boolean> {
  const have = await readFile(`${path}.key`, 'utf8').catch(() => '');
  return have === key && (await stat(path).catch(() => undefined)) !== undefined;
}

/** Records that `path` was built from `key`. */
export async function markCached(path: string, key: string): Promise<void> {
  await writeFile(`${path}.key`, key);
}

/** A built (or cached) image with the seconds its build took when it was built. */
export interface BenchImage {
  path: string;
  size: number;
  buildSeconds: number;
}

/** Builds (or reuses) image `variant` of tree `v` with Ferry's builder. */
export async function benchImage(v: string, variant: ImageVariant): Promise<BenchImage> {
  const dir = join(CACHE, 'images');
  await mkdir(dir, { recursive: true });
  const path = join(dir, `${v}-${variant.name}.img`);
  const key = JSON.stringify({ stamp: await treeStamp(v), variant, epoch: EPOCH, recipe: 1 });
  if (await cached(path, key)) {
    const meta = JSON.parse(await readFile(`${path}.json`, 'utf8')) as { buildSeconds: number };
    return { path, size: (await stat(path)).size, buildSeconds: meta.buildSeconds };
  }
  await rm(path, { force: true });
  const { seconds } = await timeIt(async () => {
    await buildImage({
      from: treePath(v),
      out: path,
      format: variant.format,
      compression: variant.compression,
      sourceDateEpoch: EPOCH,
      workDir: dir,
    });
  });
  await writeFile(`${path}.json`, JSON.stringify({ buildSeconds: seconds }));
  await markCached(path, key);
  return { path, size: (await stat(path)).size, buildSeconds: seconds };
}

/** Every image the benchmark needs, built sequentially (the machine is shared). */
export async function allImages(
  log: (line: string) => void,
): Promise<Record<string, Record<string, BenchImage>>> {
  const out: Record<string, Record<string, BenchImage>> = {};
  for (const variant of IMAGE_VARIANTS) {
    out[variant.name] = {};
    for (const v of ['v1', 'v2', 'v3']) {
      const img = await benchImage(v, variant);
      log(
        `image ${v} ${variant.name}: ${img.size} bytes (built in ${img.buildSeconds.toFixed(1)} s)`,
      );
      out[variant.name]![v] = img;
    }
  }
  return out;
}

if (import.meta.main) await allImages((l) => console.error(l));
