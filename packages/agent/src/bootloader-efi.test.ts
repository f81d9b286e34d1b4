import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isFerryError } from '@ferry/core';
import { bootloaderConformance, tempDir } from '@ferry/testing';
import { EfiBootloader, parseEfibootmgr } from './bootloader-efi.ts';
import { runBootTool } from './bootloader-tool.ts';

const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url));

/** A root with the fake efibootmgr and firmware; Boot0001=A, Boot0002=B, BootOrder A,B. */
async function efiRoot(
  vars = 'BootCurrent=0001\nBootOrder=0001,0002\nBoot0001=A\nBoot0002=B\nBoot0003=Windows Boot Manager\n',
) {
  const { dir, cleanup } = await tempDir('ferry-bl-efi-');
  await symlink(join(fixtures, 'efibootmgr'), join(dir, 'efibootmgr'));
  await symlink(join(fixtures, 'efi-firmware'), join(dir, 'efi-firmware'));
  await writeFile(join(dir, 'efivars.txt'), vars);
  const make = (options: Record<string, unknown> = {}) =>
    new EfiBootloader({
      root: dir,
      bootnames: ['A', 'B'],
      options: { tool: '/efibootmgr', ...options },
      attempts: 3,
    });
  const boot = async () => (await runBootTool(join(dir, 'efi-firmware'), [])).trim() || undefined;
  return { dir, cleanup, make, boot };
}

bootloaderConformance({
  name: 'efi (fake efibootmgr)',
  maxAttempts: 1,
  reportsAttempts: true,
  async make() {
    const r = await efiRoot();
    return {
      bootloader: r.make(),
      boot: r.boot,
      reopen: () => Promise.resolve(r.make()),
      cleanup: r.cleanup,
    };
  },
});

const REAL_OUTPUT = [
  'BootNext: 0002',
  'BootCurrent: 0001',
  'Timeout: 1 seconds',
  'BootOrder: 0001,0000',
  'Boot0000* debian\tHD(1,GPT,4b2e...,0x800,0x100000)/File(\\EFI\\debian\\shimx64.efi)',
  'Boot0001* A\tHD(2,GPT,...)/File(\\EFI\\ferry\\A.efi)',
  'Boot0002  B',
  '',
].join('\n');

describe('efi bootloader', () => {
  describe('when parsing efibootmgr output', () => {
    it('reads entries, inactive ones included, BootNext, BootCurrent and BootOrder', () => {
      assert.deepEqual(parseEfibootmgr(REAL_OUTPUT), {
        entries: [
          { num: '0000', label: 'debian' },
          { num: '0001', label: 'A' },
          { num: '0002', label: 'B' },
        ],
        order: ['0001', '0000'],
        next: '0002',
        current: '0001',
      });
    });
    it('refuses a malformed BootOrder', () => {
      assert.throws(
        () => parseEfibootmgr('BootOrder: 0001,zz\n'),
        (e) => isFerryError(e, 'BOOTLOADER_STATE_INVALID'),
      );
    });
  });

  describe('when a slot is made primary', () => {
    it('sets BootNext and takes the slot off BootOrder until it is marked good', async () => {
      const r = await efiRoot();
      try {
        const bl = r.make();
        await bl.setPrimary('B', 3);
        let vars = parseEfibootmgr(await runBootTool(join(r.dir, 'efibootmgr'), []));
        assert.equal(vars.next, '0002');
        assert.deepEqual(vars.order, ['0001']);
        assert.equal(await r.boot(), 'B');
        assert.equal(await bl.getCurrent(), 'B');
        await bl.setState('B', 'good');
        vars = parseEfibootmgr(await runBootTool(join(r.dir, 'efibootmgr'), []));
        assert.deepEqual(vars.order, ['0002', '0001']);
        assert.equal(vars.next, undefined);
      } finally {
        await r.cleanup();
      }
    });
    it('with use-bootnext = false changes BootOrder for good, with no fallback (RAUC)', async () => {
      const r = await efiRoot();
      try {
        const bl = r.make({ 'use-bootnext': false });
        await bl.setPrimary('B', 3);
        assert.deepEqual([await r.boot(), await r.boot()], ['B', 'B']);
        assert.deepEqual(await bl.getState('B'), { state: 'good' });
      } finally {
        await r.cleanup();
      }
    });
  });

  describe('when the firmware has no EFI variables or an entry is missing', () => {
    it('reports BOOTLOADER_FAILED, and BOOTLOADER_STATE_INVALID for a missing label', async () => {
      const r = await efiRoot('BootOrder=0001\nBoot0001=A\n');
      try {
        await assert.rejects(r.make().getState('B'), (e) =>
          isFerryError(e, 'BOOTLOADER_STATE_INVALID'),
        );
        await rm(join(r.dir, 'efivars.txt'));
        await assert.rejects(r.make().getPrimary(), (e) => isFerryError(e, 'BOOTLOADER_FAILED'));
      } finally {
        await r.cleanup();
      }
    });
  });

  describe('when both slots are marked bad', () => {
    it('deletes BootOrder and reports no primary', async () => {
      const r = await efiRoot('BootOrder=0001,0002\nBoot0001=A\nBoot0002=B\n');
      try {
        const bl = r.make();
        await bl.setState('A', 'bad');
        await bl.setState('B', 'bad');
        assert.equal(await bl.getPrimary(), undefined);
        assert.doesNotMatch(await readFile(join(r.dir, 'efivars.txt'), 'utf8'), /BootOrder/);
      } finally {
        await r.cleanup();
      }
    });
  });

  describe('when configured with unknown keys', () => {
    it('refuses with CONFIG_INVALID', () => {
      assert.throws(
        () =>
          new EfiBootloader({
            root: '/',
            bootnames: ['A'],
            options: { 'use-bootnxt': true },
            attempts: 3,
          }),
        (e) => isFerryError(e, 'CONFIG_INVALID'),
      );
    });
  });
});
