import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isFerryError, type Manifest } from '@ferry/core';
import type { SlotConfig } from './config.ts';
import { chooseBootSlot, planInstall, type PlanInput } from './install-plan.ts';

const slot = (name: string, over: Partial<SlotConfig> = {}): SlotConfig => ({
  name,
  class: name.split('.')[0]!,
  device: `/dev/${name}`,
  offset: 0,
  readonly: false,
  ...over,
});
const A = slot('rootfs.0', { bootname: 'A' });
const B = slot('rootfs.1', { bootname: 'B' });
const C = slot('rootfs.2', { bootname: 'C' });
const bootA = slot('boot.0', { parent: 'rootfs.0' });
const bootB = slot('boot.1', { parent: 'rootfs.1' });

function manifest(over: Partial<Manifest> = {}, images: string[] = ['rootfs']): Manifest {
  const img = {
    type: 'squashfs' as const,
    size: 10_000,
    sha256: 'a'.repeat(64),
    chunkIndex: { sha256: 'b'.repeat(64), size: 108, chunks: 1 },
    verity: {
      format: 1 as const,
      hashAlgorithm: 'sha256' as const,
      dataBlockSize: 4096 as const,
      hashBlockSize: 4096 as const,
      dataBlocks: 3,
      rootHash: 'c'.repeat(64),
      salt: '',
      treeSize: 4096,
    },
  };
  return {
    format: 1,
    compatible: 'board',
    version: '2.0.0',
    releaseCounter: 5,
    created: '2026-01-01T00:00:00Z',
    images: Object.fromEntries(images.map((n) => [n, img])),
    ...over,
  };
}

function input(over: Partial<PlanInput> = {}): PlanInput {
  const slots = [A, B, bootA, bootB];
  return {
    manifest: manifest(),
    manifestSha256: 'd'.repeat(64),
    config: {
      compatible: 'board',
      slots,
      policy: { allowDowngrade: false, allowReinstall: true },
      bootAttempts: 3,
    },
    state: { highWaterCounter: 4, slots: {} },
    booted: A,
    bootStates: { A: { state: 'good' }, B: { state: 'good' } },
    slotSizes: Object.fromEntries(slots.map((s) => [s.name, 1 << 20])),
    ...over,
  };
}

const refusal = (code: string, i: PlanInput) =>
  assert.throws(
    () => planInstall(i),
    (e) => isFerryError(e) && e.code === code,
  );

describe('planInstall', () => {
  describe('when A is booted on an A/B device', () => {
    it('targets B, with the verity tree after the 4 KiB aligned image', () => {
      const p = planInstall(input());
      assert.equal(p.bootSlot.name, 'rootfs.1');
      assert.equal(p.bootname, 'B');
      assert.equal(p.attempts, 3);
      assert.deepEqual(
        p.targets.map((t) => [t.image, t.slot.name, t.hashOffset, t.needed]),
        [['rootfs', 'rootfs.1', 12288, 16384]],
      );
    });
    it('puts each image into the slot of its class that belongs with the target', () => {
      const p = planInstall(input({ manifest: manifest({}, ['rootfs', 'boot']) }));
      assert.deepEqual(
        p.targets.map((t) => t.slot.name),
        ['boot.1', 'rootfs.1'],
      );
    });
  });
  describe('when the bundle must be refused', () => {
    it('refuses another device class', () =>
      refusal('BUNDLE_INCOMPATIBLE', input({ manifest: manifest({ compatible: 'other' }) })));
    it('refuses a lower release counter', () =>
      refusal('BUNDLE_DOWNGRADE', input({ manifest: manifest({ releaseCounter: 3 }) })));
    it('allows an equal release counter', () =>
      assert.ok(planInstall(input({ manifest: manifest({ releaseCounter: 4 }) }))));
    it('allows a downgrade when the policy says so', () =>
      assert.ok(
        planInstall(
          input({
            manifest: manifest({ releaseCounter: 1 }),
            config: { ...input().config, policy: { allowDowngrade: true, allowReinstall: true } },
          }),
        ),
      ));
    it('refuses reinstalling the running release when the policy says so', () =>
      refusal(
        'BUNDLE_REINSTALL',
        input({
          config: { ...input().config, policy: { allowDowngrade: false, allowReinstall: false } },
          state: {
            highWaterCounter: 4,
            slots: {
              'rootfs.0': {
                status: 'installed',
                release: {
                  compatible: 'board',
                  version: '2.0.0',
                  releaseCounter: 5,
                  manifestSha256: 'd'.repeat(64),
                },
              },
            },
          },
        }),
      ));
    it('refuses an image class with no slot', () =>
      refusal('INSTALL_NO_TARGET', input({ manifest: manifest({}, ['rootfs', 'app']) })));
    it('refuses a tar image', () => {
      const m = manifest();
      m.images.rootfs!.type = 'tar';
      refusal('INSTALL_NO_TARGET', input({ manifest: m }));
    });
    it('refuses an image that does not fit with its tree', () =>
      refusal(
        'INSTALL_SLOT_TOO_SMALL',
        input({ slotSizes: { 'rootfs.1': 16383, 'boot.1': 1 << 20 } }),
      ));
    it('refuses a target overlapping the booted slot on the same device', () => {
      const overlapping = slot('rootfs.1', { bootname: 'B', device: A.device, offset: 4096 });
      refusal(
        'INSTALL_TARGET_BOOTED',
        input({
          config: { ...input().config, slots: [A, overlapping] },
          slotSizes: { 'rootfs.0': 1 << 20, 'rootfs.1': 1 << 20 },
        }),
      );
    });
    it('refuses when only the booted slot is bootable', () =>
      refusal('INSTALL_NO_TARGET', input({ config: { ...input().config, slots: [A, bootA] } })));
  });
});

describe('chooseBootSlot', () => {
  const three = (states: PlanInput['state']['slots'], boot: PlanInput['bootStates'] = {}) =>
    chooseBootSlot(
      input({
        config: { ...input().config, slots: [A, B, C] },
        state: { highWaterCounter: 0, slots: states },
        bootStates: { A: { state: 'good' }, B: { state: 'good' }, C: { state: 'good' }, ...boot },
      }),
    );
  const installed = (at: string) => ({ status: 'installed' as const, installedAt: at });
  describe('when there are three slots', () => {
    it('prefers an empty slot', () =>
      assert.equal(three({ 'rootfs.1': installed('2026-01-02') }).name, 'rootfs.2'));
    it('then a slot the bootloader marks bad', () =>
      assert.equal(
        three(
          { 'rootfs.1': installed('2026-01-01'), 'rootfs.2': installed('2026-01-02') },
          { C: { state: 'bad' } },
        ).name,
        'rootfs.2',
      ));
    it('then the slot installed longest ago, keeping the newest fallback', () =>
      assert.equal(
        three({ 'rootfs.1': installed('2026-01-03'), 'rootfs.2': installed('2026-01-02') }).name,
        'rootfs.2',
      ));
    it('never the booted slot, even if it looks empty', () =>
      assert.notEqual(three({}).name, 'rootfs.0'));
  });
});
