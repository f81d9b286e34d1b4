import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { OpenedBundle, PayloadEntry } from '@ferry/core';
import type { SlotConfig } from './config.ts';
import { planUnits } from './install.ts';
import { BundleRelease, type ChunkRef } from './release-source.ts';
import type { SeedLocation } from './seeds.ts';

const id = (n: number) => n.toString(16).padStart(64, '0');
const slot: SlotConfig = {
  name: 'rootfs.1',
  class: 'rootfs',
  device: '/dev/x',
  offset: 0,
  readonly: false,
};

/** A BundleRelease over an opened bundle holding only what units() reads: the payload table. */
function bundle(lengths: number[], order = lengths.map((_, i) => i)): BundleRelease {
  const payload = new Map<string, PayloadEntry>();
  let offset = 0;
  for (const i of order) {
    payload.set(id(i), { id: id(i), offset, length: lengths[i]! });
    offset += lengths[i]!;
  }
  const opened = {
    source: { name: 'test.fbd', bytesRead: 0 },
    manifest: { compatible: 'x' },
    images: new Map(),
    payload,
  } as unknown as OpenedBundle;
  return new BundleRelease(opened);
}

describe('BundleRelease.units', () => {
  describe('when every chunk comes from the bundle in payload order', () => {
    it('reads adjacent frames as one run of the summed size', () => {
      const chunks = [0, 1, 2].map((i) => ({ id: id(i), size: 1000 }));
      const units = bundle([100, 200, 300]).units(chunks);
      assert.deepEqual(
        units.map((u) => u.size),
        [3000],
      );
    });
    it('starts a new run at 2 MiB of frames', () => {
      const lengths = Array.from({ length: 5 }, () => 700 * 1024);
      const chunks = lengths.map((_, i) => ({ id: id(i), size: 1 }));
      assert.deepEqual(
        bundle(lengths)
          .units(chunks)
          .map((u) => u.size),
        [2, 2, 1],
      );
    });
    it('starts a new run at 2 MiB of chunk bytes, however small the frames', () => {
      const chunks = Array.from({ length: 5 }, (_, i) => ({ id: id(i), size: 700 * 1024 }));
      assert.deepEqual(
        bundle([10, 10, 10, 10, 10])
          .units(chunks)
          .map((u) => u.size),
        [1400 * 1024, 1400 * 1024, 700 * 1024],
      );
    });
    it('breaks runs at frames that are not adjacent', () => {
      const chunks = [0, 2, 1].map((i) => ({ id: id(i), size: 10 }));
      assert.deepEqual(
        bundle([5, 5, 5])
          .units(chunks)
          .map((u) => u.size),
        [10, 10, 10],
      );
    });
  });
});

describe('planUnits', () => {
  /** A source whose units are one per chunk, recording the stretches it was asked for. */
  const recorder = () => {
    const gaps: string[][] = [];
    return {
      gaps,
      units: (chunks: ChunkRef[]) => {
        gaps.push(chunks.map((c) => c.id));
        return chunks.map((c) => ({
          size: c.size,
          fetch: () => Promise.reject(new Error('not fetched in this test')),
        }));
      },
    };
  };

  describe('when chunks come from seeds, the target itself and the source', () => {
    it('asks the source only for the stretches between, and covers every byte once', () => {
      const chunks = [0, 1, 2, 0, 3].map((i) => ({ id: id(i), size: 10 + i }));
      const seeds = new Map<string, SeedLocation>([[id(2), { slot, offset: 0, size: 12 }]]);
      const src = recorder();
      const units = planUnits(chunks, src, seeds, new Set([4]));
      assert.deepEqual(
        units.map((u) => u.kind),
        ['fetch', 'fetch', 'seed', 'fetch', 'present'],
      );
      assert.deepEqual(src.gaps, [[id(0), id(1)], [id(0)]]);
      assert.deepEqual(
        units.map((u) => u.offset),
        [0, 10, 21, 33, 43],
      );
      assert.equal(
        units.reduce((n, u) => n + u.size, 0),
        10 + 11 + 12 + 10 + 13,
      );
    });
  });
});
