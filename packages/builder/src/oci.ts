/**
 * Resolves the ordered layer list of an OCI image layout (index.json, nested indexes, platform
 * selection, image manifest) or a docker-archive (manifest.json). Every JSON document and blob
 * reached through a digest is verified against it before use.
 */
import { FerryError } from '@ferry/core';
import { digestHex, readJsonBlob, verifyBlob, type BlobRef, type Compression } from './blob.ts';
import type { BlobSource } from './image-input.ts';

/** One layer to apply, bottom first. */
export interface LayerRef {
  blob: BlobRef;
  /** From the media type, or 'sniff' when the format does not say (docker-archive). */
  compression: Compression | 'sniff';
  /** Verified before the layer is read, when known. */
  digest?: string;
  size?: number;
}

/** A requested platform, e.g. linux/amd64 or linux/arm64/v8. */
export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

const LAYER_TYPES: Record<string, Compression> = {
  'application/vnd.oci.image.layer.v1.tar': 'none',
  'application/vnd.oci.image.layer.v1.tar+gzip': 'gzip',
  'application/vnd.oci.image.layer.v1.tar+zstd': 'zstd',
  'application/vnd.oci.image.layer.nondistributable.v1.tar': 'none',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip': 'gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd': 'zstd',
  'application/vnd.docker.image.rootfs.diff.tar': 'none',
  'application/vnd.docker.image.rootfs.diff.tar.gzip': 'gzip',
};
const INDEX_TYPES = new Set([
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
]);
const MANIFEST_TYPES = new Set([
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
]);
const MAX_DESCRIPTORS = 1024;
const MAX_DEPTH = 4;

interface Descriptor {
  mediaType?: unknown;
  digest?: unknown;
  size?: unknown;
  platform?: { os?: unknown; architecture?: unknown; variant?: unknown };
}

function invalid(msg: string): FerryError {
  return new FerryError('IMAGE_INPUT_INVALID', msg);
}

/** Parses "os/arch[/variant]"; USAGE if malformed. */
export function parsePlatform(s: string): Platform {
  const [os, architecture, variant, extra] = s.split('/');
  if (!os || !architecture || extra !== undefined || variant === '')
    throw new FerryError('USAGE', `platform ${JSON.stringify(s)} is not os/arch[/variant]`);
  return variant ? { os, architecture, variant } : { os, architecture };
}

function matches(d: Descriptor, want: Platform): boolean {
  const p = d.platform;
  if (!p || p.os !== want.os || p.architecture !== want.architecture) return false;
  const variant = p.variant ?? (p.architecture === 'arm64' ? 'v8' : undefined);
  return want.variant === undefined || variant === want.variant;
}

function list(doc: Record<string, unknown>, key: string, what: string): Descriptor[] {
  const v = doc[key];
  if (!Array.isArray(v) || v.length > MAX_DESCRIPTORS) throw invalid(`${what}: bad "${key}" list`);
  return v.filter((d): d is Descriptor => d !== null && typeof d === 'object');
}

async function loadJson(src: BlobSource, d: Descriptor): Promise<Record<string, unknown>> {
  const ref = await src.get(`blobs/sha256/${digestHex(d.digest)}`);
  await verifyBlob(ref, d.digest as string, typeof d.size === 'number' ? d.size : undefined);
  return readJsonBlob(ref);
}

async function collect(src: BlobSource, doc: Record<string, unknown>, depth: number) {
  const out: Descriptor[] = [];
  for (const d of list(doc, 'manifests', 'index')) {
    if (MANIFEST_TYPES.has(d.mediaType as string)) out.push(d);
    else if (INDEX_TYPES.has(d.mediaType as string)) {
      if (depth >= MAX_DEPTH) throw invalid(`indexes nest deeper than ${MAX_DEPTH}`);
      out.push(...(await collect(src, await loadJson(src, d), depth + 1)));
    }
  }
  return out;
}

/**
 * The layers of the image for `platform` in an OCI image layout.
 *
 * @example
 * const layers = await resolveOciLayout(await openBlobSource('img/', scratch), parsePlatform('linux/amd64'));
 */
export async function resolveOciLayout(src: BlobSource, platform: Platform): Promise<LayerRef[]> {
  const index = await readJsonBlob(await src.get('index.json'));
  const candidates = await collect(src, index, 0);
  const onlyOne = candidates.length === 1 && !candidates[0]!.platform ? candidates[0] : undefined;
  const chosen = candidates.find((d) => matches(d, platform)) ?? onlyOne;
  if (!chosen)
    throw invalid(`no image manifest for ${platform.os}/${platform.architecture} in index.json`);
  const manifest = await loadJson(src, chosen);
  const layers: LayerRef[] = [];
  for (const d of list(manifest, 'layers', 'image manifest')) {
    const compression = LAYER_TYPES[d.mediaType as string];
    if (!compression) throw invalid(`unsupported layer media type ${String(d.mediaType)}`);
    if (typeof d.size !== 'number') throw invalid(`layer ${String(d.digest)} has no size`);
    const blob = await src.get(`blobs/sha256/${digestHex(d.digest)}`);
    layers.push({ blob, compression, digest: d.digest as string, size: d.size });
  }
  return layers;
}

async function configMatches(src: BlobSource, name: unknown, want: Platform): Promise<boolean> {
  if (typeof name !== 'string') return false;
  const c = await readJsonBlob(await src.get(name));
  return c.os === want.os && c.architecture === want.architecture;
}

/** The layers of a `docker save` archive (the entry for `platform` if it holds several). */
export async function resolveDockerArchive(
  src: BlobSource,
  platform: Platform,
): Promise<LayerRef[]> {
  const doc = await readJsonBlob(await src.get('manifest.json'));
  const entries = Array.isArray(doc) ? (doc as Record<string, unknown>[]) : [];
  if (entries.length === 0 || entries.length > MAX_DESCRIPTORS)
    throw invalid('manifest.json is not a non-empty list of images');
  let chosen = entries.length === 1 ? entries[0] : undefined;
  for (const e of entries)
    if (!chosen && (await configMatches(src, e.Config, platform))) chosen = e;
  const names = chosen?.Layers;
  if (!Array.isArray(names) || names.length > MAX_DESCRIPTORS)
    throw invalid(`manifest.json has no image for ${platform.os}/${platform.architecture}`);
  const layers: LayerRef[] = [];
  for (const name of names) {
    if (typeof name !== 'string') throw invalid('manifest.json lists a non-string layer');
    const blob = await src.get(name);
    // A blobs/sha256/<hex> member is named by its digest: hold it to that.
    const digest = name.startsWith('blobs/sha256/') ? `sha256:${name.slice(13)}` : undefined;
    layers.push(digest ? { blob, compression: 'sniff', digest } : { blob, compression: 'sniff' });
  }
  return layers;
}
