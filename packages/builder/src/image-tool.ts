/**
 * The filesystem-image tools behind one small interface, chosen through a table keyed by
 * format (as RAUC's image_type_map): adding a format is one file and one table row.
 */
import { FerryError } from '@ferry/core';
import { mkfsErofs } from './mkfs-erofs.ts';
import { mksquashfs } from './mksquashfs.ts';

/** Image formats `buildImage` can produce. */
export type ImageFormat = 'squashfs' | 'erofs';

/** Everything a tool needs for one reproducible run. */
export interface ImageToolRun {
  source: string;
  out: string;
  /** Seconds since the epoch for every inode and the superblock. */
  epoch: number;
  compression: string;
  /** 16 bytes derived from the tree content, for formats that carry a UUID. */
  uuid: string;
}

/** One mkfs tool. */
export interface ImageTool {
  readonly command: string;
  readonly defaultCompression: string;
  readonly compressions: readonly string[];
  /** Whether the format stores a UUID (then the build derives one from the tree). */
  readonly needsUuid: boolean;
  args(run: ImageToolRun): string[];
}

/** The table of image tools, keyed by format. */
export const IMAGE_TOOLS: Record<ImageFormat, ImageTool> = {
  squashfs: mksquashfs,
  erofs: mkfsErofs,
};

/** The tool for `format` (USAGE if unknown) and the checked compression to use. */
export function imageTool(format: string, compression?: string): [ImageTool, string] {
  const tool = (IMAGE_TOOLS as Record<string, ImageTool | undefined>)[format];
  if (!tool) throw new FerryError('USAGE', `unknown image format ${JSON.stringify(format)}`);
  const comp = compression ?? tool.defaultCompression;
  if (!tool.compressions.includes(comp))
    throw new FerryError(
      'USAGE',
      `${format} compression must be one of ${tool.compressions.join(', ')}, not ${JSON.stringify(comp)}`,
    );
  return [tool, comp];
}
