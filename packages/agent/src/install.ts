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
  canonicalBytes,
  FerryError,
  isFerryError,
  openBundle,
  readBundleFrame,
  serializeChunkIndex,
  VerityHasher,
  writeFileAtomic,
  type ByteSource,
  type ChunkIndex,
  type Keyring,
  type ManifestImage,
  type OpenedBundle,
} from '@ferry/core';
import type { Bootloader, BootState } from './bootloader.ts';
import type { SlotConfig, SystemConfig } from './config.ts';
import { ComputePool } from './compute-pool.ts';
import type { DecodeItem } from './compute-worker.ts';
import { faultPoint } from './fault.ts';
import { planInstall, type InstallPlan, type InstallTarget } from './install-plan.ts';
import { collectSeeds, SeedReader, type SeedLocation } from './seeds.ts';
import { deviceSize, SlotDevice } from './slot-device.ts';
import { indexPath, type StateStore } from './state.ts';

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
      phase: 'write' | 'verify';
      image: string;
      done: number;
      total: number;
      seededBytes: number;
      fetchedBytes: number;
    }
  | { id: 'install.seed-corrupt'; chunk: string; slot: string }
  | { id: 'install.committed'; target: string; bootname: string; attempts: number }
  | { id: 'install.failed'; code: string; message: string };

export interface InstallOptions {
  config: SystemConfig;
  source: ByteSource;
  keyring: Keyring;
  bootloader: Bootloader;
  booted: SlotConfig;
  state: StateStore;
  onEvent?: (e: InstallEvent) => void;
}

export interface InstallResult {
  target: string;
  bootname: string;
  version: string;
  releaseCounter: number;
  seededBytes: number;
  fetchedBytes: number;
  bundleBytesRead: number;
}

interface Counters {
  seededBytes: number;
  fetchedBytes: number;
}

/**
 * Installs a bundle (file or URL source) into the inactive slot group.
 * @example
 * await installBundle({ config, source: openSource('v2.fbd'), keyring, bootloader, booted, state });
 */
export async function installBundle(o: InstallOptions): Promise<InstallResult> {
  const emit = o.onEvent ?? (() => undefined);
  try {
    const bundle = await openBundle(o.source, { keyring: o.keyring });
    faultPoint('opened');
    const m = bundle.manifest;
    emit({
      id: 'install.started',
      source: o.source.name,
      compatible: m.compatible,
      version: m.version,
      releaseCounter: m.releaseCounter,
    });
    const plan = await makePlan(o, bundle);
    faultPoint('planned');
    const counters = { seededBytes: 0, fetchedBytes: 0 };
    await prepareTargets(o, plan);
    faultPoint('prepared');
    const state = await o.state.load();
    const seeds = await collectSeeds(
      o.config,
      state,
      new Set(plan.targets.map((t) => t.slot.name)),
    );
    emit({
      id: 'install.planned',
      target: plan.bootSlot.name,
      bootname: plan.bootname,
      images: plan.targets.map((t) => t.image),
      seedChunks: seeds.size,
    });
    const reader = new SeedReader();
    const pool = new ComputePool();
    try {
      for (const t of plan.targets) await writeTarget(o, bundle, t, seeds, reader, counters, pool);
    } finally {
      await reader.close();
      await pool.close();
    }
    faultPoint('verified');
    await recordInstalled(o, bundle, plan);
    faultPoint('recorded');
    // The commit point: from here the bootloader tries the new slot.
    await o.bootloader.setPrimary(plan.bootname, plan.attempts);
    faultPoint('committed');
    await o.state.update((s) => {
      s.pendingSlot = plan.bootSlot.name;
    });
    emit({
      id: 'install.committed',
      target: plan.bootSlot.name,
      bootname: plan.bootname,
      attempts: plan.attempts,
    });
    return {
      target: plan.bootSlot.name,
      bootname: plan.bootname,
      version: m.version,
      releaseCounter: m.releaseCounter,
      ...counters,
      bundleBytesRead: o.source.bytesRead,
    };
  } catch (e) {
    const fe = isFerryError(e)
      ? e
      : new FerryError('INTERNAL', String((e as Error)?.message ?? e), { cause: e });
    emit({ id: 'install.failed', code: fe.code, message: fe.message });
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

export function manifestSha256(b: OpenedBundle): string {
  return createHash('sha256').update(canonicalBytes(b.manifest)).digest('hex');
}

async function makePlan(o: InstallOptions, bundle: OpenedBundle): Promise<InstallPlan> {
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
  const plan = planInstall({
    manifest: bundle.manifest,
    manifestSha256: manifestSha256(bundle),
    config: o.config,
    state,
    booted: o.booted,
    bootStates,
    slotSizes,
  });
  return plan;
}

/** Before the first byte: the target is marked bad (never booted half-written) and 'writing'. */
async function prepareTargets(o: InstallOptions, plan: InstallPlan): Promise<void> {
  await o.bootloader.setState(plan.bootname, 'bad');
  await o.state.update((s) => {
    if (s.pendingSlot === plan.bootSlot.name) delete s.pendingSlot;
    for (const t of plan.targets) s.slots[t.slot.name] = { status: 'writing' };
  });
}

/** Streams one image into its slot, chunk by chunk, seeds first, then reads it back and checks it. */
/** Progress events at most every this many bytes (a 1 GiB image has some 16,000 chunks). */
const PROGRESS_STEP = 1 << 20;
/** Bundle chunks whose frames follow each other are read, decoded and written together, up to this many frame bytes. */
const RUN_BYTES = 1 << 20;

/** A piece of work for the write loop: one seed chunk, or a run of bundle chunks with adjacent frames. */
type Unit =
  | { kind: 'seed'; id: string; size: number; seed: SeedLocation }
  | { kind: 'bundle'; offset: number; length: number; size: number; items: DecodeItem[] };

/** Cuts an image's chunks into units, in image order. */
export function planUnits(
  chunks: ChunkIndex['chunks'],
  payload: OpenedBundle['payload'],
  seeds: Map<string, SeedLocation>,
): Unit[] {
  const units: Unit[] = [];
  let run: Extract<Unit, { kind: 'bundle' }> | undefined;
  for (const c of chunks) {
    const seed = seeds.get(c.id);
    if (seed) {
      run = undefined;
      units.push({ kind: 'seed', id: c.id, size: c.size, seed });
      continue;
    }
    const e = payload.get(c.id)!;
    if (run && e.offset === run.offset + run.length && run.length + e.length <= RUN_BYTES) {
      run.items.push({ id: c.id, offset: run.length, length: e.length, size: c.size });
      run.length += e.length;
      run.size += c.size;
    } else {
      run = {
        kind: 'bundle',
        offset: e.offset,
        length: e.length,
        size: c.size,
        items: [{ id: c.id, offset: 0, length: e.length, size: c.size }],
      };
      units.push(run);
    }
  }
  return units;
}

/**
 * Streams one image into its slot, then reads it back and checks it. The main thread reads and
 * writes; the pool's workers decompress and verify every chunk before its bytes come back, so
 * all cores work and no unverified byte is written. Up to 4 units are fetched ahead, written in
 * order, up to 3 writes in flight.
 */
async function writeTarget(
  o: InstallOptions,
  bundle: OpenedBundle,
  t: InstallTarget,
  seeds: Map<string, SeedLocation>,
  reader: SeedReader,
  c: Counters,
  pool: ComputePool,
) {
  const emit = o.onEvent ?? (() => undefined);
  const index = bundle.images.get(t.image)!.index;
  const units = planUnits(index.chunks, bundle.payload, seeds);
  const dev = await SlotDevice.open(t.slot, 'r+');
  const writing = new Set<Promise<void>>();
  try {
    const fetchUnit = async (u: Unit): Promise<Buffer> => {
      if (u.kind === 'seed') {
        const data = await reader.read(u.id, u.seed);
        if (data) {
          c.seededBytes += u.size;
          return data;
        }
        emit({ id: 'install.seed-corrupt', chunk: u.id, slot: u.seed.slot.name });
        const frame = await readBundleFrame(bundle, u.id);
        c.fetchedBytes += u.size;
        return pool.decode(frame, [{ id: u.id, offset: 0, length: frame.length, size: u.size }]);
      }
      const frames = await bundle.source.read(bundle.header.payloadOffset + u.offset, u.length);
      c.fetchedBytes += u.size;
      return pool.decode(frames, u.items);
    };
    const fetching: Array<Promise<Buffer>> = [];
    let next = 0;
    let pos = 0;
    let reported = 0;
    while (next < units.length || fetching.length > 0) {
      while (next < units.length && fetching.length < 4) {
        const p = fetchUnit(units[next++]!);
        void p.catch(() => undefined);
        fetching.push(p);
      }
      const data = await fetching.shift()!;
      const w = dev.write(pos, data).finally(() => writing.delete(w));
      writing.add(w);
      if (writing.size >= 3) await Promise.race(writing);
      if (pos === 0) {
        await w;
        faultPoint('first-chunk');
      }
      pos += data.length;
      if (pos - reported >= PROGRESS_STEP || pos === index.imageSize) {
        reported = pos;
        emit({
          id: 'install.progress',
          phase: 'write',
          image: t.image,
          done: pos,
          total: index.imageSize,
          ...c,
        });
      }
    }
    await Promise.all(writing);
    if (pos !== index.imageSize)
      throw new FerryError('INTERNAL', `wrote ${pos} of ${index.imageSize} bytes of ${t.image}`);
    await dev.sync();
    faultPoint('written');
    await verifyAndWriteTree(o, dev, t, bundle.manifest.images[t.image]!, pool);
  } finally {
    await Promise.allSettled(writing); // never close the slot under a pending write
    await dev.close();
  }
}

/**
 * Reads the written image back, checks SHA-256 and the dm-verity root, and stores the tree after
 * it. The main thread streams the SHA-256 while the workers hash the verity leaves of each piece.
 */
async function verifyAndWriteTree(
  o: InstallOptions,
  dev: SlotDevice,
  t: InstallTarget,
  img: ManifestImage,
  pool: ComputePool,
): Promise<void> {
  const emit = o.onEvent ?? (() => undefined);
  const salt = Buffer.from(img.verity.salt, 'hex');
  const hash = createHash('sha256');
  const verity = new VerityHasher(salt);
  const step = 4 << 20;
  const leaves: Array<Promise<Buffer>> = [];
  let reading = t.imageSize > 0 ? dev.read(0, Math.min(step, t.imageSize)) : undefined;
  for (let pos = 0; pos < t.imageSize; pos += step) {
    const data = await reading!;
    const nextPos = pos + step;
    reading =
      nextPos < t.imageSize ? dev.read(nextPos, Math.min(step, t.imageSize - nextPos)) : undefined;
    hash.update(data);
    const l = pool.leaves(salt, data); // hands `data` over: it is not used after this line
    void l.catch(() => undefined);
    leaves.push(l);
    while (leaves.length > 4) verity.addLeafDigests(await leaves.shift()!);
    emit({
      id: 'install.progress',
      phase: 'verify',
      image: t.image,
      done: Math.min(nextPos, t.imageSize),
      total: t.imageSize,
      seededBytes: 0,
      fetchedBytes: 0,
    });
  }
  for (const l of leaves) verity.addLeafDigests(await l);
  const digest = hash.digest('hex');
  if (digest !== img.sha256)
    throw new FerryError(
      'INSTALL_VERIFY_FAILED',
      `slot ${t.slot.name} reads back as ${digest}, signed ${img.sha256}`,
    );
  const v = verity.finish();
  if (v.rootHash !== img.verity.rootHash)
    throw new FerryError(
      'INSTALL_VERIFY_FAILED',
      `slot ${t.slot.name} has verity root ${v.rootHash}, signed ${img.verity.rootHash}`,
    );
  if (t.hashOffset > t.imageSize)
    await dev.write(t.imageSize, Buffer.alloc(t.hashOffset - t.imageSize));
  await dev.write(t.hashOffset, v.tree);
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
  bundle: OpenedBundle,
  plan: InstallPlan,
): Promise<void> {
  const m = bundle.manifest;
  const release = {
    compatible: m.compatible,
    version: m.version,
    releaseCounter: m.releaseCounter,
    manifestSha256: manifestSha256(bundle),
  };
  for (const t of plan.targets) {
    const img = m.images[t.image]!;
    await saveIndex(o.config.dataDir, bundle.images.get(t.image)!.index, img.chunkIndex.sha256);
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
