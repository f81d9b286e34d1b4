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
  readBundleChunk,
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
import { faultPoint } from './fault.ts';
import { planInstall, type InstallPlan, type InstallTarget } from './install-plan.ts';
import { collectSeeds, SeedReader, type SeedLocation } from './seeds.ts';
import { SlotDevice, slotSize } from './slot-device.ts';
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
    try {
      for (const t of plan.targets) await writeTarget(o, bundle, t, seeds, reader, counters);
    } finally {
      await reader.close();
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
    slotSizes[s.name] = await slotSize(s).catch(() => 0);
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
  for (const t of plan.targets) if (!slotSizes[t.slot.name]) await slotSize(t.slot); // throws INSTALL_SLOT_MISSING
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
async function writeTarget(
  o: InstallOptions,
  bundle: OpenedBundle,
  t: InstallTarget,
  seeds: Map<string, SeedLocation>,
  reader: SeedReader,
  c: Counters,
) {
  const emit = o.onEvent ?? (() => undefined);
  const index = bundle.images.get(t.image)!.index;
  const dev = await SlotDevice.open(t.slot, 'r+');
  try {
    let pos = 0;
    const fetchChunk = async (id: string, size: number): Promise<Buffer> => {
      const seed = seeds.get(id);
      if (seed) {
        const data = await reader.read(id, seed);
        if (data) {
          c.seededBytes += size;
          return data;
        }
        emit({ id: 'install.seed-corrupt', chunk: id, slot: seed.slot.name });
      }
      c.fetchedBytes += size;
      return readBundleChunk(bundle, id, size);
    };
    const window: Array<Promise<Buffer>> = [];
    let next = 0;
    while (next < index.chunks.length || window.length > 0) {
      while (next < index.chunks.length && window.length < 8) {
        const ch = index.chunks[next++]!;
        const p = fetchChunk(ch.id, ch.size);
        void p.catch(() => undefined);
        window.push(p);
      }
      const data = await window.shift()!;
      await dev.write(pos, data);
      if (pos === 0) faultPoint('first-chunk');
      pos += data.length;
      emit({
        id: 'install.progress',
        phase: 'write',
        image: t.image,
        done: pos,
        total: index.imageSize,
        ...c,
      });
    }
    await dev.sync();
    faultPoint('written');
    await verifyAndWriteTree(o, dev, t, bundle.manifest.images[t.image]!);
  } finally {
    await dev.close();
  }
}

/** Reads the written image back, checks SHA-256 and the dm-verity root, and stores the tree after it. */
async function verifyAndWriteTree(
  o: InstallOptions,
  dev: SlotDevice,
  t: InstallTarget,
  img: ManifestImage,
): Promise<void> {
  const emit = o.onEvent ?? (() => undefined);
  const hash = createHash('sha256');
  const verity = new VerityHasher(Buffer.from(img.verity.salt, 'hex'));
  const step = 4 << 20;
  for (let pos = 0; pos < t.imageSize; pos += step) {
    const data = await dev.read(pos, Math.min(step, t.imageSize - pos));
    hash.update(data);
    verity.update(data);
    emit({
      id: 'install.progress',
      phase: 'verify',
      image: t.image,
      done: pos + data.length,
      total: t.imageSize,
      seededBytes: 0,
      fetchedBytes: 0,
    });
  }
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
