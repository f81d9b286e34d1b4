/**
 * Executing an install: the named steps below, each emitting events. Nothing is written before
 * the bundle's signatures, structure and the plan have passed; each chunk is verified before it
 * is written; the whole slot is read back and checked before the bootloader is switched.
 *
 * Invariant: switching the bootloader's primary slot is the only commit point. Until then the
 * target is marked bad, so a power cut at any instant leaves the old system booting.
 */
import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import {
  FerryError,
  isFerryError,
  openBundle,
  serializeChunkIndex,
  writeFileAtomic,
  type ByteSource,
  type ChunkIndex,
  type Keyring,
} from '@ferry/core';
import type { Bootloader, BootState } from './bootloader.ts';
import type { SlotConfig, SystemConfig } from './config.ts';
import { ComputePool } from './compute-pool.ts';
import { faultPoint } from './fault.ts';
import { planInstall, type InstallPlan, type InstallTarget } from './install-plan.ts';
import {
  BundleRelease,
  RUN_BYTES,
  type ChunkRef,
  type FetchUnit,
  type ReleaseSource,
} from './release-source.ts';
import { SlabPool } from './slab-pool.ts';
import { collectSeeds, SeedReader, type SeedLocation } from './seeds.ts';
import { applyDeltaPack, deltaBases, type PackTarget } from './delta-install.ts';
import { deviceSize, SlotDevice } from './slot-device.ts';
import { indexPath, type StateStore } from './state.ts';
import { ReadBackVerifier } from './install-verify.ts';
import { Writeback } from './writeback.ts';

export type InstallEvent =
  | {
      id: 'install.started';
      source: string;
      compatible: string;
      version: string;
      releaseCounter: number;
    }
  | {
      id: 'install.planned';
      target: string;
      bootname: string;
      images: string[];
      seedChunks: number;
    }
  | {
      id: 'install.progress';
      /** 'download' when chunks come over the network, 'write' from a local bundle. */
      phase: 'download' | 'write' | 'verify';
      image: string;
      done: number;
      total: number;
      seededBytes: number;
      fetchedBytes: number;
    }
  | { id: 'install.seed-corrupt'; chunk: string; slot: string }
  | {
      /** A delta pack was tried (repository installs): what it gave before the write loop. */
      id: 'install.delta';
      image: string;
      /** Chunk-index SHA-256 of the local base image and of the target image. */
      base: string;
      target: string;
      /** 'unavailable': not served or a fetch limit hit (FETCH_*); 'refused': failed a check. */
      result: 'applied' | 'unavailable' | 'refused';
      /** Pack bytes downloaded, and verified chunks it produced and wrote. */
      bytes: number;
      chunks: number;
      code?: string;
    }
  | { id: 'install.staged'; target: string; bootname: string }
  | { id: 'install.committed'; target: string; bootname: string; attempts: number }
  | { id: 'install.failed'; code: string; message: string };

export interface InstallOptions {
  config: SystemConfig;
  keyring: Keyring;
  bootloader: Bootloader;
  booted: SlotConfig;
  state: StateStore;
  onEvent?: (e: InstallEvent) => void;
  /** Write and verify, but leave the bootloader alone (activateStaged commits later). */
  stage?: boolean;
}

export interface InstallResult {
  target: string;
  bootname: string;
  version: string;
  releaseCounter: number;
  manifestSha256: string;
  /** Bytes copied from other local slots. */
  seededBytes: number;
  /** Bytes the target slot already held at the right place (a resumed or similar install). */
  presentBytes: number;
  /** Uncompressed bytes of the chunks fetched from the source. */
  fetchedBytes: number;
  /** Compressed bytes read from the source (bundle file, bundle URL or repository). */
  bundleBytesRead: number;
  /** Of those, bytes of delta packs (0 without one); the chunks they produced count as `presentBytes`. */
  deltaBytes?: number;
  /** True when the slot was staged, not made primary. */
  staged: boolean;
}

interface Counters {
  seededBytes: number;
  presentBytes: number;
  fetchedBytes: number;
  deltaBytes: number;
}

/**
 * Installs a bundle (file or URL source) into the inactive slot group.
 * @example
 * await installBundle({ config, source: openSource('v2.fbd'), keyring, bootloader, booted, state });
 */
export async function installBundle(
  o: InstallOptions & { source: ByteSource },
): Promise<InstallResult> {
  return recordFailure(o, async () => {
    const bundle = await openBundle(o.source, { keyring: o.keyring });
    return installVerified(o, new BundleRelease(bundle));
  });
}

/**
 * Installs a release whose manifest and indexes the caller has verified (a repository release
 * fetched through TUF and checked against the keyring).
 */
export async function installRelease(
  o: InstallOptions & { release: ReleaseSource },
): Promise<InstallResult> {
  return recordFailure(o, () => installVerified(o, o.release));
}

async function installVerified(o: InstallOptions, release: ReleaseSource): Promise<InstallResult> {
  const emit = o.onEvent ?? (() => undefined);
  faultPoint('opened');
  const m = release.manifest;
  emit({
    id: 'install.started',
    source: release.name,
    compatible: m.compatible,
    version: m.version,
    releaseCounter: m.releaseCounter,
  });
  // The workers start (about a quarter second of CPU each) while the plan and seeds are made.
  const pool = new ComputePool();
  try {
    return await installWith(o, release, pool);
  } finally {
    await pool.close();
  }
}

async function installWith(
  o: InstallOptions,
  release: ReleaseSource,
  pool: ComputePool,
): Promise<InstallResult> {
  const emit = o.onEvent ?? (() => undefined);
  const m = release.manifest;
  const plan = await makePlan(o, release);
  faultPoint('planned');
  const counters = { seededBytes: 0, presentBytes: 0, fetchedBytes: 0, deltaBytes: 0 };
  await prepareTargets(o, plan);
  faultPoint('prepared');
  const state = await o.state.load();
  const seeds = await collectSeeds(o.config, state, new Set(plan.targets.map((t) => t.slot.name)));
  emit({
    id: 'install.planned',
    target: plan.bootSlot.name,
    bootname: plan.bootname,
    images: plan.targets.map((t) => t.image),
    seedChunks: seeds.size,
  });
  const reader = new SeedReader();
  try {
    for (const t of plan.targets) await writeTarget(o, release, t, seeds, reader, counters, pool);
  } finally {
    await reader.close();
  }
  faultPoint('verified');
  await recordInstalled(o, release, plan);
  faultPoint('recorded');
  await prepareBootSlot(o, release, plan);
  if (o.stage) {
    await o.state.update((s) => {
      s.stagedSlot = plan.bootSlot.name;
    });
    emit({ id: 'install.staged', target: plan.bootSlot.name, bootname: plan.bootname });
  } else {
    // The commit point: from here the bootloader tries the new slot.
    await o.bootloader.setPrimary(plan.bootname, plan.attempts);
    faultPoint('committed');
    await o.state.update((s) => {
      s.pendingSlot = plan.bootSlot.name;
      delete s.stagedSlot;
    });
    emit({
      id: 'install.committed',
      target: plan.bootSlot.name,
      bootname: plan.bootname,
      attempts: plan.attempts,
    });
  }
  return {
    target: plan.bootSlot.name,
    bootname: plan.bootname,
    version: m.version,
    releaseCounter: m.releaseCounter,
    manifestSha256: release.manifestSha256,
    ...counters,
    bundleBytesRead: release.bytesRead,
    staged: o.stage === true,
  };
}

/** What the bootloader needs outside the new slot (kernel and entry on an ESP), if anything. */
async function prepareBootSlot(
  o: InstallOptions,
  release: ReleaseSource,
  plan: InstallPlan,
): Promise<void> {
  const t = plan.targets.find((x) => x.slot.name === plan.bootSlot.name);
  if (!o.bootloader.prepareSlot || !t) return;
  await o.bootloader.prepareSlot({
    bootname: plan.bootname,
    device: t.slot.device,
    offset: t.slot.offset,
    imageSize: t.imageSize,
    imageType: release.manifest.images[t.image]?.type ?? 'raw',
    version: release.manifest.version,
  });
}

/** Runs an install, recording a failure in the state and as an event before rethrowing it. */
async function recordFailure<T>(o: InstallOptions, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (e) {
    const fe = isFerryError(e)
      ? e
      : new FerryError('INTERNAL', String((e as Error)?.message ?? e), { cause: e });
    o.onEvent?.({ id: 'install.failed', code: fe.code, message: fe.message });
    await o.state
      .update((s) => {
        s.lastInstall = {
          at: new Date().toISOString(),
          result: 'failed',
          error: { code: fe.code, message: fe.message },
        };
      })
      .catch(() => undefined);
    throw fe;
  }
}

async function makePlan(o: InstallOptions, release: ReleaseSource): Promise<InstallPlan> {
  const state = await o.state.load();
  const bootStates: Record<string, BootState> = {};
  const slotSizes: Record<string, number> = {};
  for (const s of o.config.slots) {
    if (s.bootname) bootStates[s.bootname] = await o.bootloader.getState(s.bootname);
    // A slot whose device is missing, or shorter than its configured region, gets no size.
    const device = await deviceSize(s.device).catch(() => undefined);
    const size = s.size ?? (device ?? 0) - s.offset;
    if (device !== undefined && size > 0 && s.offset + size <= device) slotSizes[s.name] = size;
  }
  return planInstall({
    manifest: release.manifest,
    manifestSha256: release.manifestSha256,
    config: o.config,
    state,
    booted: o.booted,
    bootStates,
    slotSizes,
  });
}

/** Before the first byte: the target is marked bad (never booted half-written) and 'writing'. */
async function prepareTargets(o: InstallOptions, plan: InstallPlan): Promise<void> {
  await o.bootloader.setState(plan.bootname, 'bad');
  await o.state.update((s) => {
    if (s.pendingSlot === plan.bootSlot.name) delete s.pendingSlot;
    if (s.stagedSlot === plan.bootSlot.name) delete s.stagedSlot;
    for (const t of plan.targets) s.slots[t.slot.name] = { status: 'writing' };
  });
}

/** Progress events at most every this many bytes (a 1 GiB image has some 16,000 chunks). */
const PROGRESS_STEP = 1 << 20;

/** A piece of work for the write loop, at its offset in the image. */
export type Unit =
  | { kind: 'seed'; offset: number; id: string; size: number; seed: SeedLocation }
  | { kind: 'present'; offset: number; size: number }
  | { kind: 'fetch'; offset: number; size: number; unit: FetchUnit }
  /** A chunk repeated in the image: copied from where its first copy is written. */
  | { kind: 'copy'; offset: number; size: number; from: number };

/**
 * Cuts an image's chunks into units, in image order: chunks a seed holds, chunks the target
 * already holds in place (`present`, by index), and the source's units for each stretch of
 * the rest. With `dedupe` (network sources), a chunk the image repeats is fetched once and
 * copied to its other places.
 */
export function planUnits(
  chunks: ChunkIndex['chunks'],
  release: Pick<ReleaseSource, 'units'>,
  seeds: Map<string, SeedLocation>,
  present: Set<number> = new Set(),
  dedupe = false,
): Unit[] {
  const units: Unit[] = [];
  const first = new Map<string, number>();
  let gap: ChunkRef[] = [];
  let gapOffset = 0;
  let offset = 0;
  const flush = () => {
    let at = gapOffset;
    for (const unit of release.units(gap)) {
      units.push({ kind: 'fetch', offset: at, size: unit.size, unit });
      at += unit.size;
    }
    gap = [];
  };
  chunks.forEach((c, i) => {
    const seed = seeds.get(c.id);
    const from = dedupe ? first.get(c.id) : undefined;
    if (seed || present.has(i) || from !== undefined) {
      if (gap.length) flush();
      units.push(
        seed
          ? { kind: 'seed', offset, id: c.id, size: c.size, seed }
          : from !== undefined
            ? { kind: 'copy', offset, size: c.size, from }
            : { kind: 'present', offset, size: c.size },
      );
    } else {
      if (!gap.length) gapOffset = offset;
      gap.push(c);
      first.set(c.id, offset);
    }
    offset += c.size;
  });
  if (gap.length) flush();
  return units;
}

/**
 * The chunks (by index) the slot already holds at their place in the new image: what a killed
 * download wrote before it stopped, and what an older image shares at the same offsets. Each is
 * read and hashed; only an exact match counts.
 */
async function presentChunks(
  dev: SlotDevice,
  chunks: ChunkIndex['chunks'],
  seeds: Map<string, SeedLocation>,
  limit: number,
): Promise<Set<number>> {
  const present = new Set<number>();
  let offset = 0;
  for (let i = 0; i < chunks.length; i++) {
    const c = chunks[i]!;
    if (!seeds.has(c.id) && offset + c.size <= limit) {
      const data = await dev.read(offset, c.size).catch(() => undefined);
      if (data && createHash('sha256').update(data).digest('hex') === c.id) present.add(i);
    }
    offset += c.size;
  }
  return present;
}

/**
 * Before the write loop: the chunks still missing produced from a delta pack against an image a
 * local slot holds (booted slot first), written in place and added to `present`. Any failure
 * leaves the rest to the write loop, which fetches plain chunks: the fallback order is pack,
 * then chunks.
 */
async function applyDeltas(
  o: InstallOptions,
  release: ReleaseSource,
  t: InstallTarget,
  w: PackTarget,
  c: Counters,
): Promise<void> {
  const packRange = release.packRange?.bind(release);
  if (!packRange) return;
  const target = release.manifest.images[t.image]!.chunkIndex.sha256;
  if (w.index.chunks.every((ch, i) => w.seeds.has(ch.id) || w.present.has(i))) return;
  const state = await o.state.load();
  for (const base of await deltaBases(o.config, state, t.image, new Set(), o.booted)) {
    if (base === target) continue;
    const r = await applyDeltaPack(
      (a, b) => packRange(base, target, a, b),
      release.packParallel ?? 1,
      w,
    );
    c.deltaBytes += r.bytes;
    const code = r.error?.code;
    o.onEvent?.({
      id: 'install.delta',
      image: t.image,
      base,
      target,
      result: !code ? 'applied' : code.startsWith('FETCH_') ? 'unavailable' : 'refused',
      bytes: r.bytes,
      chunks: r.chunks,
      ...(code ? { code } : {}),
    });
    if (!code) return;
  }
}

/**
 * Streams one image into its slot and reads it back behind the writes. The main thread reads and
 * writes; the pool's workers decompress and verify every chunk before its bytes come back, so
 * all cores work and no unverified byte is written. Units run concurrently, each written at its
 * own offset as soon as it is verified, so an interrupted download keeps every verified chunk.
 * A region is read back (SHA-256 and dm-verity leaves) once all of it is written; after the fsync
 * the rest is read and both digests are compared with the signed ones.
 */
async function writeTarget(
  o: InstallOptions,
  release: ReleaseSource,
  t: InstallTarget,
  seeds: Map<string, SeedLocation>,
  reader: SeedReader,
  c: Counters,
  pool: ComputePool,
) {
  const emit = o.onEvent ?? (() => undefined);
  const index = release.indexes.get(t.image)!;
  const dev = await SlotDevice.open(t.slot, 'r+');
  const running = new Set<Promise<void>>();
  const writeback = new Writeback({ sync: () => dev.datasync(), slotName: t.slot.name });
  const check = new ReadBackVerifier({
    dev,
    slotName: t.slot.name,
    img: release.manifest.images[t.image]!,
    size: t.imageSize,
    pool,
    progress: (done, total) =>
      emit({
        id: 'install.progress',
        phase: 'verify',
        image: t.image,
        done,
        total,
        seededBytes: 0,
        fetchedBytes: 0,
      }),
  });
  try {
    const present = release.remote
      ? await presentChunks(dev, index.chunks, seeds, t.hashOffset)
      : new Set<number>();
    await applyDeltas(o, release, t, { index, dev, seeds, reader, present }, c);
    const units = planUnits(index.chunks, release, seeds, present, release.remote);
    /** Completion of the unit written at each offset, for copies of repeated chunks. */
    const writes = new Map<number, Promise<void>>();
    // Two slabs per unit in flight (frames, chunks): `take` then never comes back empty-handed.
    const slabs = new SlabPool(2 * release.concurrency, RUN_BYTES);
    /** Reads and decodes a unit; slabs it takes go into `held`, freed after its write. */
    const load = async (u: Unit, held: Buffer[]): Promise<Buffer | undefined> => {
      if (u.kind === 'present') {
        c.presentBytes += u.size;
        return undefined;
      }
      if (u.kind === 'copy') {
        // Network sources fetch one chunk per unit, so the first copy's unit starts at `from`.
        await writes.get(u.from);
        c.seededBytes += u.size;
        return dev.read(u.from, u.size);
      }
      if (u.kind === 'seed') {
        const data = await reader.read(u.id, u.seed);
        if (data) {
          c.seededBytes += u.size;
          return data;
        }
        emit({ id: 'install.seed-corrupt', chunk: u.id, slot: u.seed.slot.name });
        const frame = await release.frame(u.id, u.size);
        c.fetchedBytes += u.size;
        return pool.decode(frame, [{ id: u.id, offset: 0, length: frame.length, size: u.size }]);
      }
      const into = slabs.take(0);
      held.push(...(into ? [into] : []));
      const { frames, items } = await u.unit.fetch(into);
      c.fetchedBytes += u.size;
      const out = slabs.take(u.size);
      held.push(...(out ? [out] : []));
      return pool.decode(frames, items, out?.subarray(0, u.size));
    };
    let done = 0;
    let reported = 0;
    let first = true;
    const run = async (u: Unit) => {
      const held: Buffer[] = [];
      try {
        const data = await load(u, held);
        if (data) await dev.write(u.offset, data);
        if (data) await writeback.wrote(data.length);
      } finally {
        for (const slab of held) slabs.give(slab);
      }
      if (first) {
        first = false;
        faultPoint('first-chunk');
      }
      done += u.size;
      check.written(u.offset, u.offset + u.size);
      if (done - reported >= PROGRESS_STEP || done === index.imageSize) {
        reported = done;
        emit({
          id: 'install.progress',
          phase: release.remote ? 'download' : 'write',
          image: t.image,
          done,
          total: index.imageSize,
          seededBytes: c.seededBytes,
          fetchedBytes: c.fetchedBytes,
        });
      }
    };
    for (const u of units) {
      const p = run(u).finally(() => running.delete(p));
      running.add(p);
      writes.set(u.offset, p);
      if (running.size >= release.concurrency) await Promise.race(running);
    }
    await Promise.all(running);
    if (done !== index.imageSize)
      throw new FerryError('INTERNAL', `wrote ${done} of ${index.imageSize} bytes of ${t.image}`);
    await writeback.drain();
    await dev.sync();
    faultPoint('written');
    await writeTree(dev, t, await check.finish());
  } finally {
    await Promise.allSettled(running); // never close the slot under a pending write
    await writeback.drain().catch(() => undefined);
    await check.settle();
    await dev.close();
  }
}

/** Stores the checked dm-verity tree after the image (zeros in between) and syncs. */
async function writeTree(dev: SlotDevice, t: InstallTarget, tree: Buffer): Promise<void> {
  if (t.hashOffset > t.imageSize)
    await dev.write(t.imageSize, Buffer.alloc(t.hashOffset - t.imageSize));
  await dev.write(t.hashOffset, tree);
  await dev.sync();
}

async function saveIndex(dataDir: string, index: ChunkIndex, sha256: string): Promise<void> {
  const bytes = serializeChunkIndex(index);
  if (createHash('sha256').update(bytes).digest('hex') !== sha256)
    throw new FerryError('INTERNAL', 'chunk index does not re-serialize to its signed digest');
  const path = indexPath(dataDir, sha256);
  await mkdir(dirname(path), { recursive: true });
  await writeFileAtomic(path, bytes);
}

async function recordInstalled(
  o: InstallOptions,
  source: ReleaseSource,
  plan: InstallPlan,
): Promise<void> {
  const m = source.manifest;
  const release = {
    compatible: m.compatible,
    version: m.version,
    releaseCounter: m.releaseCounter,
    manifestSha256: source.manifestSha256,
  };
  for (const t of plan.targets) {
    const img = m.images[t.image]!;
    await saveIndex(o.config.dataDir, source.indexes.get(t.image)!, img.chunkIndex.sha256);
  }
  const at = new Date().toISOString();
  await o.state.update((s) => {
    for (const t of plan.targets) {
      const img = m.images[t.image]!;
      s.slots[t.slot.name] = {
        status: 'installed',
        release,
        image: {
          class: t.image,
          sha256: img.sha256,
          size: img.size,
          chunkIndexSha256: img.chunkIndex.sha256,
          type: img.type,
          hashOffset: t.hashOffset,
        },
        installedAt: at,
      };
    }
    s.installCount++;
    s.lastInstall = {
      at,
      result: 'ok',
      release: `${m.version} (#${m.releaseCounter})`,
      target: plan.bootSlot.name,
    };
  });
}
