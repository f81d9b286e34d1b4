/**
 * Updating from a repository: a TUF refresh with the device's trusted root, the channel index
 * of the device's compatible, the newest release in it, its manifest (checked against the
 * bundle keyring as well as TUF) and chunk indexes, then an install that fetches only the
 * chunks no local slot holds. Every file but the chunks comes through tuf-js, so its length
 * and hashes are signed; each chunk is checked against its id before it is written.
 */
import { createHash } from 'node:crypto';
import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  FerryError,
  isFerryError,
  decodeChunkDelta,
  parseChunkIndex,
  parseEnvelope,
  parseJsonBounded,
  verifyManifestEnvelope,
  type ChunkIndex,
  type Keyring,
  type Manifest,
  type ManifestImage,
} from '@ferry/core';
import type { SlotConfig, SystemConfig } from './config.ts';
import { HttpFetcher } from './http-fetch.ts';
import { deltaBases } from './delta-install.ts';
import { frameBound, manifestDigest, RepoRelease } from './release-source.ts';
import { indexPath, type AgentState } from './state.ts';
import { createTufClient, initTrustedRootFromFile, type TufClient } from './tuf-client.ts';

/** What `check` found. */
export interface UpdateCheck {
  channel: string;
  /** The release the booted slot holds, when the state knows it. */
  current?: { version: string; releaseCounter: number };
  /** The newest release of the channel for this device's compatible. */
  latest?: { version: string; releaseCounter: number; manifestSha256: string };
  /** True when `latest` is newer than the booted release and no slot already waits with it. */
  available: boolean;
  /** Set when a slot already holds `latest`: made primary (`pending`) or `staged`. */
  ready?: 'pending' | 'staged';
}

/** One release as the channel index lists it (repo: channel-index.ts). */
interface IndexEntry {
  version: string;
  releaseCounter: number;
  manifest: string;
  chunkIndexes: Record<string, string>;
}

/** What the device needs to install the newest release after a check. */
export interface FoundRelease {
  entry: IndexEntry;
  manifest: Manifest;
}

const INDEX_LIMITS = { maxBytes: 4 << 20, maxDepth: 8 };

const badIndex = (msg: string) => new FerryError('UPDATE_INDEX_INVALID', msg);

/** Parses releases.json; every field is checked before use. */
export function parseChannelIndex(
  bytes: Buffer,
  channel: string,
  compatible: string,
): IndexEntry[] {
  const v = parseJsonBounded(bytes, INDEX_LIMITS) as Record<string, unknown>;
  if (typeof v !== 'object' || v === null || v.formatVersion !== 1)
    throw badIndex('channel index: not format version 1');
  if (v.channel !== channel || v.compatible !== compatible)
    throw badIndex(`channel index is for ${String(v.channel)}/${String(v.compatible)}`);
  if (!Array.isArray(v.releases)) throw badIndex('channel index: releases is not a list');
  return v.releases.map((r: unknown, i) => {
    const e = r as Record<string, unknown>;
    const ok =
      typeof e === 'object' &&
      e !== null &&
      typeof e.version === 'string' &&
      Number.isSafeInteger(e.releaseCounter) &&
      typeof e.manifest === 'string' &&
      typeof e.chunkIndexes === 'object' &&
      e.chunkIndexes !== null &&
      Object.values(e.chunkIndexes).every((p) => typeof p === 'string');
    if (!ok) throw badIndex(`channel index: release ${i} is malformed`);
    return e as unknown as IndexEntry;
  });
}

/** The parts of the agent an update uses. */
export interface UpdateContext {
  config: SystemConfig;
  keyring: Keyring;
  state: AgentState;
  booted: SlotConfig | undefined;
}

/** Repository files on the device: trusted metadata and the targets fetched through it. */
function tufDirs(config: SystemConfig) {
  return {
    metadataDir: join(config.dataDir, 'tuf', 'metadata'),
    targetDir: join(config.dataDir, 'tuf', 'targets'),
  };
}

/** A TUF client for this cycle, seeded with the image's trusted root on first use. */
export async function openTuf(config: SystemConfig): Promise<TufClient> {
  const repo = config.update.repository;
  if (!repo)
    throw new FerryError('UPDATE_NOT_CONFIGURED', `no [update] repository in ${config.path}`);
  const dirs = tufDirs(config);
  const trusted = await access(join(dirs.metadataDir, 'root.json')).then(
    () => true,
    () => false,
  );
  if (!trusted) await initTrustedRootFromFile(dirs.metadataDir, config.update.trustedRoot);
  return createTufClient({
    metadataUrl: `${repo}/metadata`,
    targetBaseUrl: `${repo}/targets`,
    ...dirs,
    fetchTimeoutMs: config.update.timeoutSeconds * 1000,
  });
}

async function fetchTarget(tuf: TufClient, name: string): Promise<Buffer> {
  const { path } = await tuf.download(name);
  return readFile(path);
}

/** A release chosen by someone else (the fleet server's director), instead of the newest. */
export interface ReleaseChoice {
  channel: string;
  /** TUF target path of the release's manifest, as the channel index lists it. */
  manifestPath: string;
}

/**
 * Refreshes TUF metadata and finds the newest release of the device's channel and compatible,
 * or the release `choice` names (with a refreshed `tuf` client, when the caller has one).
 * Throws TUF_* codes, UPDATE_NOT_CONFIGURED, UPDATE_NO_RELEASE, UPDATE_INDEX_INVALID and the
 * manifest's signature codes.
 */
export async function checkUpdate(
  ctx: UpdateContext,
  opts: { choice?: ReleaseChoice; tuf?: TufClient } = {},
): Promise<{ check: UpdateCheck; found: FoundRelease; tuf: TufClient }> {
  const { config, state } = ctx;
  const channel = opts.choice?.channel ?? state.channel ?? config.update.channel;
  const tuf = opts.tuf ?? (await openTuf(config));
  if (!opts.tuf) await tuf.refresh();
  const indexName = `channels/${channel}/${config.compatible}/index/releases.json`;
  const bytes = await fetchTarget(tuf, indexName).catch((e: unknown) => {
    if (isFerryError(e, 'TUF_TARGET_NOT_FOUND'))
      throw new FerryError(
        'UPDATE_NO_RELEASE',
        `channel ${channel} has no release for ${config.compatible}`,
      );
    throw e;
  });
  const entries = parseChannelIndex(bytes, channel, config.compatible);
  const choice = opts.choice?.manifestPath;
  const entry = choice
    ? entries.find((e) => e.manifest === choice)
    : entries.reduce<IndexEntry | undefined>(
        (best, e) => (!best || e.releaseCounter > best.releaseCounter ? e : best),
        undefined,
      );
  if (!entry)
    throw new FerryError(
      'UPDATE_NO_RELEASE',
      `channel ${channel} lists no ${choice ?? config.compatible}`,
    );
  // TUF pins the bytes; the bundle keyring must sign them too, as for a bundle from a USB stick.
  const envelope = parseEnvelope(await fetchTarget(tuf, entry.manifest));
  const { manifest } = verifyManifestEnvelope(envelope, ctx.keyring);
  if (
    manifest.compatible !== config.compatible ||
    manifest.version !== entry.version ||
    manifest.releaseCounter !== entry.releaseCounter
  )
    throw badIndex(`channel index entry ${entry.version} does not match its signed manifest`);
  const sha = manifestDigest(manifest);
  const bootedRelease = ctx.booted ? state.slots[ctx.booted.name]?.release : undefined;
  const holds = (slot: string | undefined) =>
    slot !== undefined && state.slots[slot]?.release?.manifestSha256 === sha;
  const ready = holds(state.pendingSlot)
    ? 'pending'
    : holds(state.stagedSlot)
      ? 'staged'
      : undefined;
  const current = bootedRelease
    ? { version: bootedRelease.version, releaseCounter: bootedRelease.releaseCounter }
    : undefined;
  const check: UpdateCheck = {
    channel,
    ...(current ? { current } : {}),
    latest: { version: entry.version, releaseCounter: entry.releaseCounter, manifestSha256: sha },
    available:
      !ready &&
      bootedRelease?.manifestSha256 !== sha &&
      entry.releaseCounter > (current?.releaseCounter ?? 0),
    ...(ready ? { ready } : {}),
  };
  return { check, found: { entry, manifest }, tuf };
}

/** Checks index bytes against the digest and size the signed manifest names; undefined if not. */
function signedIndex(bytes: Buffer, ref: ManifestImage, image: string): ChunkIndex | undefined {
  if (bytes.length !== ref.chunkIndex.size) return undefined;
  if (createHash('sha256').update(bytes).digest('hex') !== ref.chunkIndex.sha256) return undefined;
  const index = parseChunkIndex(bytes);
  if (index.imageSize !== ref.size || index.imageSha256 !== ref.sha256)
    throw new FerryError('CHUNK_INDEX_MISMATCH', `chunk index of ${image} is of another image`);
  return index;
}

/**
 * The target index rebuilt from an index delta against a base index this device keeps
 * (`deltas/<base>/<target>.cidx.zst`, written by `ferry repo delta`). Accepted only if it is
 * byte for byte the index the manifest signs; anything else (404, limits, a bad delta) is
 * undefined and the index comes through TUF instead.
 */
async function indexFromDelta(
  ctx: IndexContext,
  image: string,
  ref: ManifestImage,
): Promise<ChunkIndex | undefined> {
  const target = ref.chunkIndex.sha256;
  for (const base of await deltaBases(ctx.config, ctx.state, image, new Set(), ctx.booted)) {
    try {
      const delta = await ctx.fetcher.get(
        `${ctx.config.update.repository}/deltas/${base}/${target}.cidx.zst`,
        { maxBytes: frameBound(ref.chunkIndex.size) },
      );
      const baseBytes = await readFile(indexPath(ctx.config.dataDir, base));
      const bytes = decodeChunkDelta(baseBytes, delta, ref.chunkIndex.size);
      const index = signedIndex(bytes, ref, image);
      if (index) return index;
    } catch (e) {
      if (isFerryError(e, 'CHUNK_INDEX_MISMATCH')) throw e;
      // A missing or bad index delta only costs the full index.
    }
  }
  return undefined;
}

/** What fetching the chunk indexes of a release needs. */
interface IndexContext {
  config: SystemConfig;
  state: AgentState;
  booted: SlotConfig | undefined;
  fetcher: HttpFetcher;
}

/**
 * The chunk indexes of `found`: from an index delta when the device keeps a base index the
 * repository has one for, else through TUF; each checked against the digest the manifest signs.
 */
async function fetchIndexes(
  tuf: TufClient,
  found: FoundRelease,
  ctx: IndexContext,
): Promise<Map<string, ChunkIndex>> {
  const indexes = new Map<string, ChunkIndex>();
  for (const [image, ref] of Object.entries(found.manifest.images)) {
    const fromDelta = await indexFromDelta(ctx, image, ref);
    if (fromDelta) {
      indexes.set(image, fromDelta);
      continue;
    }
    const path = found.entry.chunkIndexes[image];
    if (!path) throw badIndex(`channel index names no chunk index for image ${image}`);
    // Mix-and-match guard: the index must be the one the signed manifest names.
    const index = signedIndex(await fetchTarget(tuf, path), ref, image);
    if (!index)
      throw new FerryError('CHUNK_INDEX_MISMATCH', `chunk index of ${image} is not the signed one`);
    indexes.set(image, index);
  }
  return indexes;
}

/** The release found by a check, ready for installRelease (chunks from `<repo>/chunks/`). */
export async function openRepoRelease(
  ctx: Omit<UpdateContext, 'keyring'>,
  tuf: TufClient,
  found: FoundRelease,
  signal?: AbortSignal,
): Promise<RepoRelease> {
  const u = ctx.config.update;
  const fetcher = new HttpFetcher({
    parallel: u.parallel,
    timeoutMs: u.timeoutSeconds * 1000,
    minRate: u.minRate,
    bandwidth: u.bandwidth,
    ...(signal ? { signal } : {}),
  });
  try {
    const indexes = await fetchIndexes(tuf, found, { ...ctx, fetcher });
    return new RepoRelease({
      name: `${u.repository}@${found.entry.version}`,
      base: u.repository!,
      manifest: found.manifest,
      indexes,
      parallel: u.parallel,
      fetcher,
    });
  } catch (e) {
    fetcher.close();
    throw e;
  }
}
