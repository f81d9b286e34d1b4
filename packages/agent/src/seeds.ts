/**
 * Seeds: chunks a device already holds in its slots. Each installed image's chunk index is kept
 * in the data directory, so every chunk of every local image can be found by id and read from
 * its slot instead of being downloaded. A seed chunk is verified against its id before use; a
 * corrupt one is fetched from the bundle instead.
 */
import { readFile } from 'node:fs/promises';
import { chunkId, chunkOffsets, parseChunkIndex } from '@ferry/core';
import type { SlotConfig, SystemConfig } from './config.ts';
import { indexPath, type AgentState } from './state.ts';
import { SlotDevice } from './slot-device.ts';

export interface SeedLocation {
  slot: SlotConfig;
  offset: number;
  size: number;
}

/** Every chunk in the installed images of the slots not excluded, by chunk id. */
export async function collectSeeds(
  config: SystemConfig,
  state: AgentState,
  exclude: Set<string>,
): Promise<Map<string, SeedLocation>> {
  const seeds = new Map<string, SeedLocation>();
  for (const slot of config.slots) {
    const rec = state.slots[slot.name];
    if (exclude.has(slot.name) || rec?.status !== 'installed' || !rec.image) continue;
    const bytes = await readFile(indexPath(config.dataDir, rec.image.chunkIndexSha256)).catch(
      () => undefined,
    );
    if (!bytes) continue;
    const index = parseChunkIndex(bytes);
    const offsets = chunkOffsets(index);
    index.chunks.forEach((c, i) => {
      if (!seeds.has(c.id)) seeds.set(c.id, { slot, offset: offsets[i]!, size: c.size });
    });
  }
  return seeds;
}

/** Opened seed slots, read-only, shared across an install. */
export class SeedReader {
  readonly #open = new Map<string, Promise<SlotDevice>>();

  /** The chunk's bytes if the seed still holds them intact, else undefined. */
  async read(id: string, loc: SeedLocation): Promise<Buffer | undefined> {
    let dev = this.#open.get(loc.slot.name);
    if (!dev) {
      dev = SlotDevice.open(loc.slot, 'r');
      this.#open.set(loc.slot.name, dev);
    }
    try {
      const data = await (await dev).read(loc.offset, loc.size);
      return chunkId(data) === id ? data : undefined;
    } catch {
      return undefined;
    }
  }

  async close(): Promise<void> {
    for (const d of this.#open.values()) await (await d.catch(() => undefined))?.close();
  }
}
