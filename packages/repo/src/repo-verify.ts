/**
 * Verifying a whole repository as a client would, and more: the root chain from a trusted root
 * (each root N+1 signed by a threshold of root N's keys and of its own), timestamp, snapshot,
 * targets and every channel role (signatures with @tufjs/models, versions, hashes and lengths
 * against the parent, expiry), every target file, every release's manifest against its custom
 * fields and chunk indexes, and every chunk those indexes reference; every stored tree listing a
 * manifest signs and the file objects it names (present; re-hashed with `deep`).
 */
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { createZstdDecompress } from 'node:zlib';
import { Metadata, MetadataKind, type Root, type Targets, type MetaFile } from '@tufjs/models';
import {
  canonicalBytes,
  ChunkStore,
  FerryError,
  ObjectHasher,
  parseChunkIndex,
  parseEnvelope,
  parseJsonBounded,
  validateManifest,
  verifyManifestEnvelope,
  withContext,
  type Keyring,
  type TreeEntry,
} from '@ferry/core';
import { METADATA_MAX_BYTES, metadataFile, objectFile } from './repo-layout.ts';
import { objectPaths, readStoredTree } from './repo-tree.ts';
import { latestRootVersion, readMetadata } from './repo-state.ts';
import { buildChannelIndex, channelIndexPath } from './channel-index.ts';
import { releasesIn, type PublishedRelease } from './release.ts';
import { readTargetFile } from './target-file.ts';
import type { AnyMetadata } from './tuf-key.ts';

/** Options of verifyRepo. */
export interface VerifyRepoOptions {
  /** The root the verifier trusts (bytes of a root.json, or its path), usually 1.root.json. */
  trustedRoot: Uint8Array | string;
  /** Also verify each manifest's signatures against this bundle keyring. */
  keyring?: Keyring;
  /** The time expiry is checked against (default now). */
  now?: Date;
  /** Also decompress and re-hash every file object (default: check each is present). */
  deep?: boolean;
}

/** What verifyRepo checked. */
export interface RepoReport {
  rootVersion: number;
  timestampVersion: number;
  snapshotVersion: number;
  targetsVersion: number;
  /** Per channel: its role's version and releases. */
  channels: Record<string, { version: number; releases: string[] }>;
  targetFiles: number;
  /** Distinct chunks verified, and their uncompressed bytes. */
  chunks: number;
  chunkBytes: number;
  /** Stored tree listings checked, and the distinct file objects they name. */
  trees: number;
  objects: number;
}

function invalid(what: string, e: unknown): FerryError {
  return new FerryError('REPO_INVALID', `${what}: ${(e as Error).message}`, { cause: e });
}

function check(what: string, fn: () => void): void {
  try {
    fn();
  } catch (e) {
    throw invalid(what, e);
  }
}

function fresh(what: string, md: AnyMetadata, now: Date): void {
  // Freeze attack: stale metadata served forever.
  if (md.signed.isExpired(now))
    throw new FerryError('REPO_METADATA_EXPIRED', `${what} expired at ${md.signed.expires}`);
}

async function trustedRootOf(input: Uint8Array | string): Promise<Metadata<Root>> {
  const bytes = typeof input === 'string' ? await readFile(input) : input;
  try {
    const json = parseJsonBounded(bytes, { maxBytes: METADATA_MAX_BYTES.root, maxDepth: 32 });
    return Metadata.fromJSON(MetadataKind.Root, json as never);
  } catch (e) {
    throw invalid('trusted root', e);
  }
}

/** TUF 5.3: walk N+1.root.json from the trusted root; each signed by old and new thresholds. */
async function verifyRootChain(dir: string, trusted: Metadata<Root>, now: Date) {
  check('trusted root', () => trusted.verifyDelegate('root', trusted));
  let root = trusted;
  const latest = await latestRootVersion(dir);
  for (let v = trusted.signed.version + 1; v <= latest; v++) {
    const { md } = await readMetadata(metadataFile(dir, 'root', v), MetadataKind.Root);
    check(`${v}.root.json`, () => {
      root.verifyDelegate('root', md);
      md.verifyDelegate('root', md);
      if (md.signed.version !== v) throw new Error(`declares version ${md.signed.version}`);
    });
    root = md;
  }
  if (root.signed.version !== latest) throw invalid('root', new Error('newer than the repository'));
  fresh('root', root, now);
  return root;
}

/** Loads a versioned role listed in `meta`, checking length, hashes and version against it. */
async function loadListed<K extends MetadataKind>(
  dir: string,
  role: string,
  kind: K,
  meta: MetaFile | undefined,
) {
  if (!meta) throw invalid(role, new Error('not listed by its parent'));
  const { md, bytes } = await readMetadata(metadataFile(dir, role, meta.version), kind);
  check(`${meta.version}.${role}.json`, () => {
    meta.verify(bytes);
    if (md.signed.version !== meta.version)
      throw new Error(`declares version ${md.signed.version}`);
  });
  return md;
}

async function verifyRelease(
  dir: string,
  role: Targets,
  r: PublishedRelease,
  trees: Set<string>,
  keyring?: Keyring,
) {
  const envelope = parseEnvelope(await readTargetFile(dir, role.targets[r.paths[0]!]!));
  const m = keyring
    ? verifyManifestEnvelope(envelope, keyring).manifest
    : validateManifest(envelope.signed);
  const where = `${r.channel}/${r.compatible}@${r.version}`;
  if (
    m.compatible !== r.compatible ||
    m.version !== r.version ||
    m.releaseCounter !== r.releaseCounter
  )
    throw invalid(where, new Error('custom fields differ from the manifest'));
  for (const img of Object.values(m.images)) if (img.tree) trees.add(img.tree.sha256);
  const images = Object.keys(m.images).sort();
  if (images.join() !== Object.keys(r.chunkIndexes).sort().join())
    throw invalid(where, new Error('chunk index targets differ from the manifest images'));
  const chunks = new Map<string, number>();
  for (const image of images) {
    const t = role.targets[r.chunkIndexes[image]!]!;
    if (t.hashes.sha256 !== m.images[image]!.chunkIndex.sha256)
      throw invalid(where, new Error(`${image}.cidx is not the index the manifest signs`));
    for (const c of parseChunkIndex(await readTargetFile(dir, t)).chunks) chunks.set(c.id, c.size);
  }
  return chunks;
}

async function verifyChunks(dir: string, chunks: Map<string, number>): Promise<number> {
  const store = new ChunkStore(dir);
  let bytes = 0;
  for (const [id, size] of chunks) {
    const data = await store.get(id, size);
    if (data.length !== size)
      throw new FerryError(
        'CHUNK_HASH_MISMATCH',
        `chunk ${id} is ${data.length} bytes, not ${size}`,
      );
    bytes += size;
  }
  return bytes;
}

/** Decompresses object `id` and checks it hashes to its id with the entry's metadata. */
async function rehashObject(dir: string, id: string, e: TreeEntry): Promise<void> {
  const h = new ObjectHasher({ ...e, size: e.size! });
  try {
    for await (const c of createReadStream(objectFile(dir, id)).pipe(createZstdDecompress())) {
      const chunk = c as Buffer;
      // Attack stopped: a decompression bomb under an object's name.
      if (h.bytes + chunk.length > e.size!) throw new Error(`more than ${e.size} bytes`);
      h.update(chunk);
    }
  } catch (err) {
    throw new FerryError('REPO_OBJECT_CORRUPT', `object ${id}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (h.bytes !== e.size || h.objectId() !== id)
    throw new FerryError('REPO_OBJECT_CORRUPT', `object ${id} does not hash to its id`);
}

/** Each stored listing the manifests sign, and every object it names. */
async function verifyTrees(dir: string, digests: Set<string>, deep: boolean) {
  const objects = new Map<string, TreeEntry>();
  let trees = 0;
  for (const d of digests) {
    const listing = await readStoredTree(dir, d);
    if (!listing) continue;
    trees++;
    for (const [id, e] of objectPaths(listing)) objects.set(id, e);
  }
  for (const [id, e] of objects) {
    await stat(objectFile(dir, id)).catch((err: unknown) => {
      throw new FerryError('REPO_OBJECT_MISSING', `object ${id} (${e.path}) is not stored`, {
        cause: err,
      });
    });
    if (deep) await rehashObject(dir, id, e);
  }
  return { trees, objects: objects.size };
}

/** Every compatible of the channel has an index, and each index lists exactly its releases. */
async function verifyChannelIndexes(
  dir: string,
  channel: string,
  role: Targets,
  releases: PublishedRelease[],
) {
  for (const compatible of new Set(releases.map((r) => r.compatible))) {
    const path = channelIndexPath(channel, compatible);
    const t = role.targets[path];
    if (!t) throw invalid(`${channel}/${compatible}`, new Error(`${path} is missing`));
    const want = canonicalBytes(buildChannelIndex(channel, compatible, role.targets));
    if (!want.equals(await readTargetFile(dir, t)))
      throw invalid(path, new Error('does not list the releases of its channel'));
  }
}

/** TUF 5.3-5.6 for the top-level roles: signatures, versions, hashes against parents, expiry. */
async function verifyTopLevel(dir: string, trusted: Metadata<Root>, now: Date) {
  const root = await verifyRootChain(dir, trusted, now);
  const { md: timestamp } = await readMetadata(
    metadataFile(dir, 'timestamp'),
    MetadataKind.Timestamp,
  );
  check('timestamp', () => root.verifyDelegate('timestamp', timestamp));
  fresh('timestamp', timestamp, now);
  const snapshotMeta = timestamp.signed.snapshotMeta;
  const snapshot = await loadListed(dir, 'snapshot', MetadataKind.Snapshot, snapshotMeta);
  check('snapshot', () => root.verifyDelegate('snapshot', snapshot));
  fresh('snapshot', snapshot, now);
  const targetsMeta = snapshot.signed.meta['targets.json'];
  const targets = await loadListed(dir, 'targets', MetadataKind.Targets, targetsMeta);
  check('targets', () => root.verifyDelegate('targets', targets));
  fresh('targets', targets, now);
  if (Object.keys(targets.signed.targets).length > 0)
    throw invalid('targets', new Error('top-level targets lists files; releases go in channels'));
  return { root, timestamp, snapshot, targets };
}

/** One channel role: signature by its delegation, paths, target files, releases. */
async function verifyChannel(
  dir: string,
  top: Awaited<ReturnType<typeof verifyTopLevel>>,
  name: string,
  opts: VerifyRepoOptions & { now: Date },
  chunks: Map<string, number>,
  trees: Set<string>,
) {
  const meta = top.snapshot.signed.meta[`${name}.json`];
  const md = await loadListed(dir, name, MetadataKind.Targets, meta);
  check(name, () => top.targets.verifyDelegate(name, md));
  fresh(name, md, opts.now);
  const delegation = top.targets.signed.delegations!.roles![name]!;
  for (const t of Object.values(md.signed.targets)) {
    // Attack stopped: a channel role signing files outside its delegated paths.
    if (!delegation.isDelegatedPath(t.path))
      throw invalid(name, new Error(`${t.path} is outside its paths`));
    await readTargetFile(dir, t);
  }
  const channel = name.replace(/^channel-/, '');
  const releases = releasesIn(channel, md.signed.targets);
  await verifyChannelIndexes(dir, channel, md.signed, releases);
  for (const r of releases)
    for (const [id, size] of await verifyRelease(dir, md.signed, r, trees, opts.keyring))
      chunks.set(id, size);
  return { md, releases: releases.map((r) => `${r.compatible}@${r.version}`) };
}

/**
 * Verifies the repository in `dir` against `trustedRoot`. Throws REPO_INVALID (signature,
 * version, hash or layout), REPO_METADATA_EXPIRED, REPO_TARGET_MISMATCH, CHUNK_MISSING,
 * CHUNK_HASH_MISMATCH, CHUNK_CORRUPT, REPO_OBJECT_MISSING or REPO_OBJECT_CORRUPT at the first
 * failure; returns a report otherwise.
 *
 * @example
 * const report = await verifyRepo('/srv/ferry', { trustedRoot: 'keys/1.root.json' });
 */
export async function verifyRepo(dir: string, opts: VerifyRepoOptions): Promise<RepoReport> {
  const now = opts.now ?? new Date();
  try {
    const top = await verifyTopLevel(dir, await trustedRootOf(opts.trustedRoot), now);
    const report: RepoReport = {
      rootVersion: top.root.signed.version,
      timestampVersion: top.timestamp.signed.version,
      snapshotVersion: top.snapshot.signed.version,
      targetsVersion: top.targets.signed.version,
      channels: {},
      targetFiles: 0,
      chunks: 0,
      chunkBytes: 0,
      trees: 0,
      objects: 0,
    };
    const chunks = new Map<string, number>();
    const trees = new Set<string>();
    for (const name of Object.keys(top.targets.signed.delegations?.roles ?? {})) {
      const { md, releases } = await verifyChannel(dir, top, name, { ...opts, now }, chunks, trees);
      report.targetFiles += Object.keys(md.signed.targets).length;
      report.channels[name.replace(/^channel-/, '')] = { version: md.signed.version, releases };
    }
    report.chunkBytes = await verifyChunks(dir, chunks);
    report.chunks = chunks.size;
    Object.assign(report, await verifyTrees(dir, trees, opts.deep ?? false));
    return report;
  } catch (e) {
    throw withContext(`verifying repository ${dir}`, e);
  }
}
