/**
 * erofs images with mkfs.erofs 1.5 (Debian 12): lz4hc by default, lz4, or none.
 */
import type { ImageTool, ImageToolRun } from './image-tool.ts';

/** The mkfs.erofs wrapper. */
export const mkfsErofs: ImageTool = {
  command: 'mkfs.erofs',
  defaultCompression: 'lz4hc',
  compressions: ['lz4hc', 'lz4', 'none'],
  needsUuid: true,
  args(run: ImageToolRun): string[] {
    return [
      '--quiet',
      // -T fixes every inode's time and the superblock build time; -U replaces the random UUID.
      `-T${run.epoch}`,
      `-U${run.uuid}`,
      ...(run.compression === 'none' ? [] : [`-z${run.compression}`]),
      run.out,
      run.source,
    ];
  },
};
