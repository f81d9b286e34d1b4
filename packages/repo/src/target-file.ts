/**
 * Target files on disk, under their consistent-snapshot names. Reading one back always checks
 * its length and hashes against the signed TargetFile (with @tufjs/models), the same check a
 * client makes.
 */
import { mkdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Readable } from 'node:stream';
import type { TargetFile } from '@tufjs/models';
import { FerryError, readBoundedFile, writeFileAtomic } from '@ferry/core';
import { TARGET_MAX_BYTES, targetFile } from './repo-layout.ts';

/** Writes a target file under its consistent-snapshot name unless it is there already. */
export async function storeTargetFile(
  dir: string,
  target: TargetFile,
  bytes: Buffer,
): Promise<void> {
  const path = targetFile(dir, target.path, target.hashes.sha256!);
  const present = await stat(path).then(
    (s) => s.size === bytes.length,
    () => false,
  );
  if (present) return;
  await mkdir(dirname(path), { recursive: true });
  await writeFileAtomic(path, bytes);
}

/**
 * Reads target `t` from `dir` and verifies it. Throws REPO_TARGET_MISMATCH if the file is
 * missing, too large, or not the signed length and hashes.
 */
export async function readTargetFile(dir: string, t: TargetFile): Promise<Buffer> {
  const path = targetFile(dir, t.path, t.hashes.sha256 ?? '');
  const max = Math.min(t.length, TARGET_MAX_BYTES);
  let bytes: Buffer;
  try {
    ({ bytes } = await readBoundedFile(path, max, 'REPO_TARGET_MISMATCH'));
  } catch (e) {
    if ((e as FerryError).code === 'IO')
      throw new FerryError('REPO_TARGET_MISMATCH', `target ${t.path}: ${(e as Error).message}`, {
        cause: e,
      });
    throw e;
  }
  try {
    await t.verify(Readable.from([bytes]));
  } catch (e) {
    throw new FerryError('REPO_TARGET_MISMATCH', `target ${t.path}: ${(e as Error).message}`, {
      cause: e,
    });
  }
  return bytes;
}
