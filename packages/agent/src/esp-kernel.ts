/**
 * A slot's kernel and initramfs on the ESP, for bootloaders that cannot read the slot's
 * filesystem (systemd-boot reads FAT only). The files are read out of the newly written,
 * verified image, mounted read-only with nodev, nosuid and noexec, without following a symlink
 * inside it, and copied to the ESP under content-addressed names (temp file, fsync, rename), so
 * two slots with the same kernel share one file and the booted slot's files are never rewritten.
 */
import { lstat, mkdtemp, readdir, rm, rmdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FerryError, fsyncDir } from '@ferry/core';
import type { PrepareSlot } from './bootloader.ts';
import { runBootTool } from './bootloader-tool.ts';
import { copyContentAddressed } from './deploy-boot-kernel.ts';

/** Names the kernel files get in the kernel directory: `<prefix>-<32 hex of their SHA-256>`. */
export const ESP_KERNEL_PREFIX = 'vmlinuz';
export const ESP_INITRD_PREFIX = 'initrd';
const ESP_FILE = /^(vmlinuz|initrd)-[0-9a-f]{32}$/;

/** The kernel files of one slot, as names inside the kernel directory. */
export interface EspKernel {
  linux: string;
  initrd: string;
}

/** `rel` (a path inside the image) must be a regular file reached through real directories only. */
async function imageFile(mnt: string, rel: string): Promise<string> {
  const parts = rel.split('/').filter((p) => p !== '');
  if (parts.length === 0 || parts.some((p) => p === '..' || p === '.'))
    throw new FerryError('INSTALL_BOOT_FILES', `invalid path ${rel} inside the image`);
  let p = mnt;
  for (const [i, part] of parts.entries()) {
    p = join(p, part);
    const st = await lstat(p).catch(() => undefined);
    const last = i === parts.length - 1;
    if (!st || (last ? !st.isFile() : !st.isDirectory()))
      throw new FerryError(
        'INSTALL_BOOT_FILES',
        `the new image has no regular file /${parts.join('/')} (a symlink is not followed)`,
      );
  }
  return p;
}

/**
 * The mount(8) options for reading a slot's image: read-only, nodev, nosuid, noexec, through a
 * loop device at the slot's offset unless the slot is a whole block device.
 */
export async function slotImageMountOptions(
  device: string,
  offset: number,
  size: number,
): Promise<string> {
  // The slot's device path is configuration (trusted), e.g. a /dev/disk/by-* link: follow it.
  const st = await stat(device);
  const loop = st.isBlockDevice() && offset === 0 ? '' : `,loop,offset=${offset},sizelimit=${size}`;
  return `ro,nodev,nosuid,noexec${loop}`;
}

/**
 * Mounts the slot's image read-only (nodev, nosuid, noexec; through a loop device at its offset
 * when the slot is a region of a file or device) and runs `fn` on the mount point.
 */
export async function withSlotImage<T>(
  slot: PrepareSlot,
  fn: (mnt: string) => Promise<T>,
): Promise<T> {
  if (slot.imageType !== 'squashfs' && slot.imageType !== 'erofs')
    throw new FerryError(
      'INSTALL_BOOT_FILES',
      `cannot read a kernel out of a ${slot.imageType} image (squashfs or erofs)`,
    );
  const opts = await slotImageMountOptions(slot.device, slot.offset, slot.imageSize);
  const mnt = await mkdtemp(join(tmpdir(), 'ferry-slot-'));
  try {
    await runBootTool('mount', ['-t', slot.imageType, '-o', opts, slot.device, mnt]);
    try {
      return await fn(mnt);
    } finally {
      await runBootTool('umount', [mnt]);
    }
  } finally {
    // rmdir, never a recursive rm: if the unmount failed, the mount point holds the image.
    await rmdir(mnt).catch(() => undefined);
  }
}

/**
 * Copies the kernel and initramfs at `kernel` and `initrd` (paths inside the mounted image) into
 * `dir` on the ESP under content-addressed names; an identical file already there is kept.
 *
 * @example
 * const k = await withSlotImage(slot, (m) => copyEspKernel(m, 'boot/vmlinuz', 'boot/initrd.img', '/boot/ferry'));
 */
export async function copyEspKernel(
  mnt: string,
  kernel: string,
  initrd: string,
  dir: string,
): Promise<EspKernel> {
  const linux = await copyContentAddressed(await imageFile(mnt, kernel), dir, ESP_KERNEL_PREFIX);
  const rd = await copyContentAddressed(await imageFile(mnt, initrd), dir, ESP_INITRD_PREFIX);
  return { linux, initrd: rd };
}

/**
 * Removes from `dir` the kernel files (and leftover temp files) that no name in `keep` refers
 * to. Only names Ferry itself gives are touched.
 */
export async function pruneEspKernels(dir: string, keep: ReadonlySet<string>): Promise<string[]> {
  const removed: string[] = [];
  const names = await readdir(dir).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return [] as string[];
    throw e;
  });
  for (const name of names) {
    if (keep.has(name) || !(ESP_FILE.test(name) || name.startsWith('.tmp-'))) continue;
    await rm(join(dir, name), { force: true });
    removed.push(name);
  }
  if (removed.length > 0) await fsyncDir(dir);
  return removed;
}
