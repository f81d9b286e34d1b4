/**
 * squashfs images with mksquashfs 4.5.1 (Debian 12). gzip is the default compression because
 * GRUB 2.06 reads gzip, xz and lzo squashfs but not zstd. `none` stores inodes, data, fragments
 * and xattrs uncompressed: the image chunks well for delta updates (docs/image-build.md).
 */
import type { ImageTool, ImageToolRun } from './image-tool.ts';

/** mksquashfs flags for `--compression none`: no compression of any table or block. */
export const SQUASHFS_UNCOMPRESSED_FLAGS = ['-noI', '-noD', '-noF', '-noX'] as const;

/** The mksquashfs wrapper. */
export const mksquashfs: ImageTool = {
  command: 'mksquashfs',
  defaultCompression: 'gzip',
  compressions: ['gzip', 'xz', 'lzo', 'lz4', 'zstd', 'none'],
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
      // The superblock still names a compressor; with every -no* flag it is never used.
      ...(run.compression === 'none'
        ? ['-comp', 'gzip', ...SQUASHFS_UNCOMPRESSED_FLAGS]
        : ['-comp', run.compression]),
    ];
  },
};
