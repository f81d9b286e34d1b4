import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cleanLine, qemuArgs } from './qemu.ts';

describe('cleanLine', () => {
  describe('when GRUB clears the screen before its text', () => {
    it('keeps only the text', () => {
      assert.equal(cleanLine('\x1b[H\x1b[J\x1b[1;1HFERRY-GRUB: slot=A\r'), 'FERRY-GRUB: slot=A');
    });
  });
  describe('when a progress bar overwrites itself', () => {
    it('keeps what the terminal shows last', () => {
      assert.equal(cleanLine('download 2%\rdownload 100%\rinstalled 2.0.0\r'), 'installed 2.0.0');
    });
  });
});

describe('qemuArgs', () => {
  describe('when given a disk', () => {
    it('uses TCG, the disk as virtio and user networking', () => {
      const args = qemuArgs({ disk: '/x/disk.img', log: '/x/log' }).join(' ');
      assert.match(args, /-accel tcg/);
      assert.match(args, /file=\/x\/disk\.img,format=raw,if=virtio/);
      assert.match(args, /-netdev user,id=n0/);
    });
  });
  describe('when the firmware is ovmf', () => {
    it('boots OVMF instead of SeaBIOS', () => {
      const args = qemuArgs({ disk: '/x/disk.img', log: '/x/log', firmware: 'ovmf' });
      assert.equal(args[args.indexOf('-bios') + 1], '/usr/share/ovmf/OVMF.fd');
      assert.ok(!qemuArgs({ disk: '/x/disk.img', log: '/x/log' }).includes('-bios'));
    });
  });
});

describe('qemuArgs', () => {
  describe('when the watchdog is asked for', () => {
    it('adds an i6300esb whose expiry resets the machine', () => {
      const args = qemuArgs({ disk: '/x/d.img', log: '/x/log', watchdog: true }).join(' ');
      assert.match(args, /-device i6300esb -action watchdog=reset/);
    });
  });
  describe('when it is not', () => {
    it('has no watchdog device', () => {
      assert.doesNotMatch(qemuArgs({ disk: '/x/d.img', log: '/x/log' }).join(' '), /i6300esb/);
    });
  });
});
