/**
 * Capability checks for tests. A test that needs something this machine lacks is skipped with
 * a reason naming it; under CI (CI=true) a missing capability is an error instead, because CI
 * provides every capability.
 *
 * @example
 * it('builds a squashfs', needs('mksquashfs'), async () => { ... });
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { postgresBinDir } from './postgres.ts';

export type Capability =
  | 'root'
  | 'loop'
  | 'mksquashfs'
  | 'unsquashfs'
  | 'mkfs.erofs'
  | 'mkfs.btrfs'
  | 'veritysetup'
  | 'casync'
  | 'mknod'
  | 'setfattr'
  | 'nginx'
  | 'sfdisk'
  | 'bootctl'
  | 'unshare'
  | 'grub-editenv'
  | 'grub-script-check'
  | 'fw_printenv'
  | 'fw_setenv'
  | 'mkenvimage'
  | 'mkimage'
  | 'postgres'
  | 'qemu'
  | 'grub-bios'
  | 'grub-efi'
  | 'ovmf'
  | 'mtools'
  | 'mkfs.vfat'
  | 'systemd-boot-efi'
  | 'busybox'
  | 'debugfs'
  | 'chromium';

const cache = new Map<Capability, boolean>();

function onPath(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status === 0;
}

function probe(cap: Capability): boolean {
  switch (cap) {
    case 'root':
      return process.getuid?.() === 0;
    case 'loop':
      return process.getuid?.() === 0 && existsSync('/dev/loop-control') && onPath('losetup');
    case 'postgres':
      return postgresBinDir() !== undefined && (process.getuid?.() !== 0 || onPath('runuser'));
    case 'qemu':
      return onPath('qemu-system-x86_64');
    case 'grub-bios':
      return onPath('grub-mkimage') && existsSync('/usr/lib/grub/i386-pc/grub-bios-setup');
    case 'grub-efi':
      return onPath('grub-mkimage') && existsSync('/usr/lib/grub/x86_64-efi/linux.mod');
    case 'ovmf':
      return existsSync('/usr/share/ovmf/OVMF.fd');
    case 'mtools':
      return onPath('mcopy') && onPath('mdir') && onPath('mtype');
    case 'systemd-boot-efi':
      return existsSync('/usr/lib/systemd/boot/efi/systemd-bootx64.efi');
    case 'busybox':
      return existsSync('/bin/busybox');
    default:
      return onPath(cap);
  }
}

/** Whether this machine has `cap`. */
export function have(cap: Capability): boolean {
  let v = cache.get(cap);
  if (v === undefined) {
    v = probe(cap);
    cache.set(cap, v);
  }
  return v;
}

/** Test options that skip (or, under CI, fail) when a capability is missing. */
export function needs(...caps: Capability[]): { skip?: string } {
  const missing = caps.filter((c) => !have(c));
  if (missing.length === 0) return {};
  const reason = `needs ${missing.join(', ')}`;
  if (process.env.CI === 'true')
    throw new Error(`CI lacks a capability the tests need: ${reason} (.ci/run must install it)`);
  return { skip: reason };
}
