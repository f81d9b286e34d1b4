import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { SlotConfig } from './config.ts';
import { kexecCmdlineProblem, kexecCommandLine } from './kexec-cmdline.ts';

const slotB: SlotConfig = {
  name: 'rootfs.1',
  class: 'rootfs',
  device: '/dev/vda4',
  offset: 0,
  bootname: 'B',
  readonly: false,
};

describe('kexecCommandLine', () => {
  describe('when the template names the slot as a GRUB menu entry does', () => {
    it('gives the line the entry of that slot passes', () => {
      const t =
        'root=PARTLABEL=rootfs-{bootname-lower} ro ferry.slot={bootname} console=ttyS0,115200';
      assert.equal(
        kexecCommandLine(t, slotB),
        'root=PARTLABEL=rootfs-b ro ferry.slot=B console=ttyS0,115200',
      );
    });
  });
  describe('when the template uses the device and the slot name', () => {
    it('fills them in and collapses runs of spaces', () => {
      assert.equal(
        kexecCommandLine('  root={device}   ro  x={slot} ', slotB),
        'root=/dev/vda4 ro x=rootfs.1',
      );
    });
  });
});

describe('kexecCmdlineProblem', () => {
  describe('when every placeholder is known', () => {
    it('finds none', () => {
      assert.equal(
        kexecCmdlineProblem('root={device} ferry.slot={bootname} {slot} {bootname-lower}'),
        undefined,
      );
    });
  });
  describe('when a placeholder is unknown', () => {
    it('names it', () => {
      assert.match(kexecCmdlineProblem('root={root}') ?? '', /unknown placeholder \{root\}/);
    });
  });
  describe('when a placeholder is a name every object has', () => {
    it('is refused like any unknown one', () => {
      assert.match(kexecCmdlineProblem('x={toString}') ?? '', /unknown placeholder/);
      assert.match(kexecCmdlineProblem('x={__proto__}') ?? '', /unknown placeholder/);
    });
  });
  describe('when the template spans lines or holds control characters', () => {
    it('is refused', () => {
      assert.match(kexecCmdlineProblem('ro\ninit=/bin/sh') ?? '', /one line/);
    });
  });
});
