import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isFerryError } from '@ferry/core';
import type { Bootloader } from './bootloader.ts';
import { parseConfig, type SystemConfig } from './config.ts';
import { loadKexec, planKexec } from './kexec.ts';
import { freshState, type AgentState } from './state.ts';

const TOML = `
[system]
compatible = "acme-gw"
bootloader = "grub"

[kexec]
cmdline = "root=PARTLABEL=rootfs-{bootname-lower} ro ferry.slot={bootname} console=ttyS0"

[slot.rootfs.0]
device = "/dev/vda3"
bootname = "A"

[slot.rootfs.1]
device = "/dev/vda4"
bootname = "B"
`;

const config = (extra = ''): SystemConfig => parseConfig(TOML + extra, { root: '/' });

/** A state where B holds an installed, verified image. */
function installedB(): AgentState {
  const s = freshState();
  s.slots['rootfs.1'] = {
    status: 'installed',
    image: {
      class: 'rootfs',
      sha256: 'a'.repeat(64),
      size: 4096,
      chunkIndexSha256: 'b'.repeat(64),
      type: 'squashfs',
    },
  };
  return s;
}

const code = (c: string) => (e: unknown) => isFerryError(e) && e.code === c;

describe('planKexec', () => {
  describe('when the boot script would boot B, which holds an installed image', () => {
    it("starts B's kernel with the command line of B's menu entry", () => {
      const { plan, slot } = planKexec(config(), installedB(), { bootname: 'B', attemptsLeft: 2 });
      assert.equal(slot.device, '/dev/vda4');
      assert.deepEqual(plan, {
        slot: 'rootfs.1',
        bootname: 'B',
        kernel: '/boot/vmlinuz',
        initrd: '/boot/initrd.img',
        cmdline: 'root=PARTLABEL=rootfs-b ro ferry.slot=B console=ttyS0',
        attemptsLeft: 2,
      });
    });
  });
  describe('when [kexec] initrd is empty', () => {
    it('loads no initramfs', () => {
      const c = config();
      c.kexec.initrd = '';
      assert.equal(planKexec(c, installedB(), { bootname: 'B' }).plan.initrd, undefined);
    });
  });
  describe('when the boot script has no bootable slot', () => {
    it('refuses with KEXEC_NO_TARGET', () => {
      assert.throws(() => planKexec(config(), installedB(), {}), code('KEXEC_NO_TARGET'));
    });
  });
  describe('when the slot it would boot holds no installed image', () => {
    it('refuses with KEXEC_NO_TARGET', () => {
      const s = installedB();
      s.slots['rootfs.1']!.status = 'writing';
      assert.throws(() => planKexec(config(), s, { bootname: 'B' }), code('KEXEC_NO_TARGET'));
      assert.throws(() => planKexec(config(), s, { bootname: 'A' }), code('KEXEC_NO_TARGET'));
    });
  });
  describe('when the slot holds an image that is not a filesystem', () => {
    it('refuses with KEXEC_NO_TARGET', () => {
      const s = installedB();
      s.slots['rootfs.1']!.image!.type = 'raw';
      assert.throws(() => planKexec(config(), s, { bootname: 'B' }), code('KEXEC_NO_TARGET'));
    });
  });
  describe('when the bootloader names a slot that is not configured', () => {
    it('refuses with KEXEC_NO_TARGET', () => {
      assert.throws(
        () => planKexec(config(), installedB(), { bootname: 'C' }),
        code('KEXEC_NO_TARGET'),
      );
    });
  });
});

describe('loadKexec', () => {
  const plain: Bootloader = {
    name: 'custom',
    getPrimary: () => Promise.resolve('B'),
    setPrimary: () => Promise.resolve(),
    getState: () => Promise.resolve({ state: 'good' }),
    setState: () => Promise.resolve(),
  };
  describe('when the backend cannot count a boot attempt outside the bootloader', () => {
    it('refuses with KEXEC_UNSUPPORTED', async () => {
      await assert.rejects(
        loadKexec({ config: config(), bootloader: plain, state: installedB() }),
        code('KEXEC_UNSUPPORTED'),
      );
    });
  });
  describe('when the device boots deployments', () => {
    it('refuses with KEXEC_UNSUPPORTED before asking the bootloader', async () => {
      let asked = false;
      const counting: Bootloader = {
        ...plain,
        nextBoot: () => ((asked = true), Promise.resolve({ bootname: 'B' })),
        countBootAttempt: () => Promise.resolve(() => Promise.resolve()),
      };
      await assert.rejects(
        loadKexec({
          config: config('\n[deploy]\nboot = "grub"\n'),
          bootloader: counting,
          state: installedB(),
        }),
        code('KEXEC_UNSUPPORTED'),
      );
      assert.equal(asked, false);
    });
  });
});
