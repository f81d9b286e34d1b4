import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { PayloadEntry } from '@ferry/core';
import type { SlotConfig } from './config.ts';
import { planUnits } from './install.ts';
import type { SeedLocation } from './seeds.ts';

const id = (n: number) => n.toString(16).padStart(64, '0');
const slot: SlotConfig = {
  name: 'rootfs.1',
  class: 'rootfs',
  device: '/dev/x',
  offset: 0,
  readonly: false,
};

function payload(lengths: number[], order = lengths.map((_, i) => i)): Map<string, PayloadEntry> {
  const m = new Map<string, PayloadEntry>();
  let offset = 0;
  for (const i of order) {
    m.set(id(i), { id: id(i), offset, length: lengths[i]! });
    offset += lengths[i]!;
  }
  return m;
}

describe('planUnits', () => {
  describe('when every chunk comes from the bundle in payload order', () => {
    it('reads adjacent frames as one run, with offsets inside the run', () => {
      const chunks = [0, 1, 2].map((i) => ({ id: id(i), size: 1000 }));
      const units = planUnits(chunks, payload([100, 200, 300]), new Map());
      assert.equal(units.length, 1);
      const u = units[0]!;
      assert.equal(u.kind, 'bundle');
      if (u.kind !== 'bundle') return;
      assert.deepEqual([u.offset, u.length, u.size], [0, 600, 3000]);
      assert.deepEqual(
        u.items.map((i) => [i.offset, i.length]),
        [
          [0, 100],
          [100, 200],
          [300, 300],
        ],
      );
    });
    it('starts a new run at 1 MiB of frames', () => {
      const lengths = Array.from({ length: 5 }, () => 350 * 1024);
      const chunks = lengths.map((_, i) => ({ id: id(i), size: 1 }));
      assert.deepEqual(
        planUnits(chunks, payload(lengths), new Map()).map((u) =>
          u.kind === 'bundle' ? u.items.length : 0,
        ),
        [2, 2, 1],
      );
    });
  });
  describe('when chunks repeat or come from seeds', () => {
    it('breaks runs at seeds and at frames that are not adjacent', () => {
      const chunks = [0, 1, 2, 0, 3].map((i) => ({ id: id(i), size: 10 }));
      const seeds = new Map<string, SeedLocation>([[id(2), { slot, offset: 0, size: 10 }]]);
      const units = planUnits(chunks, payload([5, 5, 5, 5]), seeds);
      assert.deepEqual(
        units.map((u) => (u.kind === 'seed' ? 'seed' : u.items.length)),
        [2, 'seed', 1, 1],
      );
      assert.equal(
        units.reduce((n, u) => n + u.size, 0),
        50,
        'every byte of the image is covered once',
      );
    });
  });
});
