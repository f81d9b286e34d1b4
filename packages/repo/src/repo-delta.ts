/**
 * Delta packs as static files: for a target release and each base release, one pack per image
 * at `deltas/<base chunk-index sha256>/<target chunk-index sha256>.fdp` (docs/formats/delta.md).
 * A CDN serves them like chunks. They are not TUF targets and need no signature: a device checks
 * every chunk a pack yields against its id and against the signed target index, so a pack can
 * waste bandwidth but never change an image. Which pairs to compute is a pure function
 * (planDeltaPairs); computing a pack reads base and target chunks from the chunk store.
 */
import { mkdir, open, readdir, rename, rm, rmdir, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import {
  ChunkStore,
  DEFAULT_DELTA_ZSTD_LEVEL,
  DEFAULT_SEGMENT_BYTES,
  FerryError,
  SimilarityIndex,
  chunkSketch,
  encodeChunkDelta,
  encodeDeltaPack,
  MAX_DELTA_WINDOW,
  writeFileAtomic,
  parseChunkIndex,
  planDeltaPack,
  type ChunkIndex,
  type ChunkIndexEntry,
} from '@ferry/core';
import { channelRoleName, checkChannel } from './repo-layout.ts';
import { loadRepo, type RepoState } from './repo-state.ts';
import { listReleases, releasesIn, type PublishedRelease } from './release.ts';
import { readTargetFile } from './target-file.ts';

/** Directory of delta packs in a repository (served as is, like `chunks/`). */
export const DELTAS_DIR = 'deltas';
/** File suffix of a delta pack. */
export const DELTA_PACK_SUFFIX = '.fdp';
/**
 * Suffix of an index delta: the target's chunk index as one zstd frame with the base's index as
 * its dictionary (encodeChunkDelta), next to the pack. Unchanged entries cost almost nothing.
 */
export const INDEX_DELTA_SUFFIX = '.cidx.zst';

/** Where the index delta for a base and target index lives, relative to the repository. */
export function indexDeltaPath(base: string, target: string): string {
  return deltaPackPath(base, target).slice(0, -DELTA_PACK_SUFFIX.length) + INDEX_DELTA_SUFFIX;
}

const SHA_RE = /^[0-9a-f]{64}$/;

/**
 * The path of the pack turning the image with chunk index `base` into the one with `target`,
 * relative to the repository root (also its URL path under the repository URL).
 *
 * @example
 * deltaPackPath(a, b); // 'deltas/<a>/<b>.fdp'
 */
export function deltaPackPath(base: string, target: string): string {
  if (!SHA_RE.test(base) || !SHA_RE.test(target))
    throw new FerryError('USAGE', 'a delta pack is named by two lowercase SHA-256 digests');
  return `${DELTAS_DIR}/${base}/${target}${DELTA_PACK_SUFFIX}`;
}

/** Options of makeDeltaPacks. */
export interface DeltaOptions {
  channel: string;
  /** Base versions (looked up in every channel, same compatible as the target). */
  from?: readonly string[];
  /** Without `from`: the last N releases of the channel below the target (default 1). */
  last?: number;
  /** Target version (default: the newest of the channel for each compatible). */
  to?: string;
  /** zstd level of the segments (default 19). */
  level?: number;
  /** Bound of one segment's dictionary plus output (default 32 MiB: device memory). */
  segmentBytes?: number;
}

/** One base release and the target release it gets packs to. */
export interface DeltaPair {
  from: PublishedRelease;
  to: PublishedRelease;
}

function notFound(what: string): never {
  throw new FerryError('REPO_RELEASE_NOT_FOUND', what);
}

/**
 * The (base, target) release pairs to compute, per compatible of `channel`. Pure. Throws
 * REPO_RELEASE_NOT_FOUND for a `to` no compatible of the channel has, or a `from` version
 * the repository lacks for the target's compatible; USAGE for a bad `last`.
 */
export function planDeltaPairs(
  channel: PublishedRelease[],
  all: PublishedRelease[],
  opts: Pick<DeltaOptions, 'from' | 'last' | 'to'>,
): DeltaPair[] {
  const last = opts.last ?? 1;
  if (!Number.isSafeInteger(last) || last < 1 || last > 1000)
    throw new FerryError('USAGE', `--last must be an integer in 1..1000, got ${last}`);
  const pairs: DeltaPair[] = [];
  const compatibles = [...new Set(channel.map((r) => r.compatible))].sort();
  for (const compatible of compatibles) {
    const mine = channel
      .filter((r) => r.compatible === compatible)
      .sort((a, b) => a.releaseCounter - b.releaseCounter);
    const to = opts.to === undefined ? mine.at(-1) : mine.find((r) => r.version === opts.to);
    if (!to) continue;
    const bases = opts.from?.length
      ? opts.from.map(
          (v) =>
            all.find((r) => r.compatible === compatible && r.version === v) ??
            notFound(`no release ${compatible}@${v} in the repository`),
        )
      : mine.filter((r) => r.releaseCounter < to.releaseCounter).slice(-last);
    for (const from of bases) if (from.version !== to.version) pairs.push({ from, to });
  }
  if (opts.to !== undefined && !channel.some((r) => r.version === opts.to))
    notFound(`channel ${channel[0]?.channel ?? '?'} has no release ${opts.to}`);
  return pairs;
}

/** One pack makeDeltaPacks considered. */
export interface DeltaPackInfo {
  compatible: string;
  from: string;
  to: string;
  image: string;
  /** Chunk-index SHA-256 of the base and target images. */
  baseIndex: string;
  targetIndex: string;
  /** Path relative to the repository root. */
  path: string;
  bytes: number;
  /** False when the pack was there already (packs are computed once per pair). */
  created: boolean;
  /** Size of the index delta (`<target>.cidx.zst` beside the pack), when one was made. */
  indexDeltaBytes?: number;
  /** Set when created: segments, chunks sent, and base chunks they reference. */
  segments?: number;
  chunks?: number;
  refs?: number;
}

/** A release's chunk index of `image`, read back and checked against its signed hash. */
async function readIndex(
  state: RepoState,
  r: PublishedRelease,
  image: string,
): Promise<{ sha: string; index: ChunkIndex; bytes: Buffer } | undefined> {
  const path = r.chunkIndexes[image];
  const t = path ? state.roles.get(channelRoleName(r.channel))?.signed.targets[path] : undefined;
  if (!t) return undefined;
  const bytes = await readTargetFile(state.dir, t);
  return { sha: t.hashes.sha256!, index: parseChunkIndex(bytes), bytes };
}

/** Writes the index delta of a pair unless it is there (or the indexes are too large for one). */
async function writeIndexDelta(
  dir: string,
  b: { sha: string; bytes: Buffer },
  t: { sha: string; bytes: Buffer },
): Promise<number | undefined> {
  const file = join(dir, indexDeltaPath(b.sha, t.sha));
  const have = await stat(file).catch(() => undefined);
  if (have) return have.size;
  if (b.bytes.length + 1 + t.bytes.length > MAX_DELTA_WINDOW) return undefined;
  const delta = encodeChunkDelta(b.bytes, t.bytes, 19);
  await mkdir(dirname(file), { recursive: true });
  await writeFileAtomic(file, delta);
  return delta.length;
}

/** For each target chunk the base lacks, the most similar base chunk (sketch votes). */
async function similarBases(
  store: ChunkStore,
  base: ChunkIndex,
  target: ChunkIndex,
  baseIds: Set<string>,
): Promise<Map<string, ChunkIndexEntry>> {
  const sim = new SimilarityIndex<ChunkIndexEntry>();
  const seen = new Set<string>();
  for (const c of base.chunks) {
    if (seen.has(c.id)) continue;
    seen.add(c.id);
    sim.add(c, chunkSketch(await store.get(c.id, c.size)));
  }
  const best = new Map<string, ChunkIndexEntry>();
  for (const c of target.chunks) {
    if (baseIds.has(c.id) || best.has(c.id)) continue;
    const m = sim.mostSimilar(chunkSketch(await store.get(c.id, c.size)));
    if (m) best.set(c.id, m.key);
  }
  return best;
}

/**
 * Computes the pack from `base` to `target` into `file` (atomically), one segment in memory at a
 * time. Chunks come verified from the store (CHUNK_MISSING if a release lost one).
 */
async function writePack(
  store: ChunkStore,
  base: ChunkIndex,
  target: ChunkIndex,
  file: string,
  o: { level: number; segmentBytes: number },
): Promise<{ segments: number; chunks: number; refs: number }> {
  const baseIds = new Set(base.chunks.map((c) => c.id));
  const best = await similarBases(store, base, target, baseIds);
  const segs = planDeltaPack(
    target,
    (id) => baseIds.has(id),
    (id) => best.get(id),
    o.segmentBytes,
  );
  const head = encodeDeltaPack(
    [],
    () => Buffer.alloc(0),
    () => Buffer.alloc(0),
  );
  head.writeUInt32LE(segs.length, 12);
  await mkdir(dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  const fh = await open(tmp, 'w', 0o644);
  try {
    await fh.write(head);
    for (const seg of segs) {
      const bytes = new Map<string, Buffer>();
      for (const e of [...seg.refs, ...seg.out]) bytes.set(e.id, await store.get(e.id, e.size));
      const get = (e: ChunkIndexEntry) => bytes.get(e.id)!;
      // A one-segment pack minus its 16-byte pack header is exactly that segment's bytes.
      await fh.write(encodeDeltaPack([seg], get, get, o.level).subarray(head.length));
    }
    await fh.sync();
  } catch (e) {
    await fh.close();
    await rm(tmp, { force: true });
    throw e;
  }
  await fh.close();
  await rename(tmp, file);
  return {
    segments: segs.length,
    chunks: segs.reduce((a, s) => a + s.out.length, 0),
    refs: segs.reduce((a, s) => a + s.refs.length, 0),
  };
}

/**
 * Computes the delta packs to the target release of `opts.channel` (per compatible) from each
 * base release, one per image both hold, unless present. Throws REPO_RELEASE_NOT_FOUND, USAGE,
 * REPO_TARGET_MISMATCH (a damaged index), CHUNK_MISSING.
 *
 * @example
 * const r = await makeDeltaPacks('/srv/ferry', { channel: 'stable', last: 3 });
 * for (const p of r) console.log(p.path, p.bytes);
 */
export async function makeDeltaPacks(dir: string, opts: DeltaOptions): Promise<DeltaPackInfo[]> {
  const channel = checkChannel(opts.channel);
  const state = await loadRepo(dir);
  const role = state.roles.get(channelRoleName(channel));
  if (!role) notFound(`the repository has no channel ${channel}`);
  const pairs = planDeltaPairs(releasesIn(channel, role.signed.targets), listReleases(state), opts);
  const store = new ChunkStore(dir);
  const level = opts.level ?? DEFAULT_DELTA_ZSTD_LEVEL;
  const segmentBytes = opts.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
  const out: DeltaPackInfo[] = [];
  for (const { from, to } of pairs)
    for (const image of Object.keys(to.chunkIndexes).sort()) {
      const b = await readIndex(state, from, image);
      const t = await readIndex(state, to, image);
      if (!b || !t || b.sha === t.sha) continue;
      const path = deltaPackPath(b.sha, t.sha);
      const file = join(dir, path);
      const have = await stat(file).catch(() => undefined);
      const made = have
        ? undefined
        : await writePack(store, b.index, t.index, file, { level, segmentBytes });
      const indexDeltaBytes = await writeIndexDelta(dir, b, t);
      out.push({
        compatible: to.compatible,
        from: from.version,
        to: to.version,
        image,
        baseIndex: b.sha,
        targetIndex: t.sha,
        path,
        bytes: have?.size ?? (await stat(file)).size,
        created: made !== undefined,
        ...(indexDeltaBytes !== undefined ? { indexDeltaBytes } : {}),
        ...made,
      });
    }
  return out;
}

/** What gc did with delta packs. */
export interface DeltaGcResult {
  kept: number;
  deleted: number;
  deletedBytes: number;
}

/** The chunk-index SHA-256 of every image of every published release, from signed metadata. */
export function publishedIndexes(state: RepoState): Set<string> {
  const shas = new Set<string>();
  for (const r of listReleases(state)) {
    const targets = state.roles.get(channelRoleName(r.channel))!.signed.targets;
    for (const path of Object.values(r.chunkIndexes)) shas.add(targets[path]!.hashes.sha256!);
  }
  return shas;
}

/**
 * Deletes every pack whose target index no published release names (a pack is useful while a
 * device can still install its target, whatever its base). Other files are left alone.
 */
export async function pruneDeltaPacks(state: RepoState, dryRun = false): Promise<DeltaGcResult> {
  const keep = publishedIndexes(state);
  const root = join(state.dir, DELTAS_DIR);
  const result: DeltaGcResult = { kept: 0, deleted: 0, deletedBytes: 0 };
  const bases = await readdir(root).catch(() => []);
  for (const base of bases.filter((b) => SHA_RE.test(b))) {
    for (const name of await readdir(join(root, base)).catch(() => [])) {
      const suffix = [DELTA_PACK_SUFFIX, INDEX_DELTA_SUFFIX].find((x) => name.endsWith(x));
      const target = suffix ? name.slice(0, -suffix.length) : '';
      if (!SHA_RE.test(target)) continue;
      if (keep.has(target)) {
        result.kept++;
        continue;
      }
      const file = join(root, base, name);
      result.deletedBytes += (await stat(file).catch(() => ({ size: 0 }))).size;
      result.deleted++;
      if (!dryRun) await rm(file, { force: true });
    }
    if (!dryRun) await rmdir(join(root, base)).catch(() => undefined); // only if now empty
  }
  return result;
}
