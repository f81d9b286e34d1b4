/**
 * squashfs images with mksquashfs 4.5.1 (Debian 12). gzip is the default compression because
 * GRUB 2.06 reads gzip, xz and lzo squashfs but not zstd.
 */
import type { ImageTool, ImageToolRun } from './image-tool.ts';

/** The mksquashfs wrapper. */
export const mksquashfs: ImageTool = {
  command: 'mksquashfs',
  defaultCompression: 'gzip',
  compressions: ['gzip', 'xz', 'lzo', 'lz4', 'zstd'],
  needsUuid: false,
  args(run: ImageToolRun): string[] {
    const t = String(run.epoch);
    return [
      run.source,
      run.out,
      '-noappend',
      '-no-progress',
      '-quiet',
      '-no-recovery',
      '-exit-on-error',
      '-reproducible',
      // Superblock time and every inode's time fixed: the tree's own mtimes never leak.
      '-mkfs-time',
      t,
      '-all-time',
      t,
      '-comp',
      run.compression,
    ];
  },
};
