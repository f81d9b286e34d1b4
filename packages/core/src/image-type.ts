/** Recognises image types by their magic numbers. */
import { open } from 'node:fs/promises';
import type { ImageType } from './manifest.ts';

/** squashfs: "hsqs" at 0; erofs: 0xE0F5E1E2 (LE) at 1024; tar: "ustar" at 257; anything else is raw. */
export function imageTypeOf(head: Uint8Array): ImageType {
  const b = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  if (b.length >= 4 && b.toString('latin1', 0, 4) === 'hsqs') return 'squashfs';
  if (b.length >= 1028 && b.readUInt32LE(1024) === 0xe0f5e1e2) return 'erofs';
  if (b.length >= 262 && b.toString('latin1', 257, 262) === 'ustar') return 'tar';
  return 'raw';
}

/**
 * Detects the type of the image file at `path`.
 * @example
 * await detectImageType('rootfs.sqfs'); // 'squashfs'
 */
export async function detectImageType(path: string): Promise<ImageType> {
  const fh = await open(path, 'r');
  try {
    const head = Buffer.alloc(1028);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    return imageTypeOf(head.subarray(0, bytesRead));
  } finally {
    await fh.close();
  }
}
