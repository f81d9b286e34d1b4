/**
 * Writing merged /etc entries into a directory Ferry owns (the new deployment's /etc, or the
 * conflict record). Nothing here writes under an input tree; names come from readdir, so they
 * hold no '/' and no '..', and every parent is created by us before its children.
 */
import { chmod, lchown, lutimes, mkdir, open, readdir, symlink, utimes } from 'node:fs/promises';
import { lstat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { FerryError } from '@ferry/core';
import type { EtcEntry } from './etc-tree.ts';

/** Ownership can only be given away by root; as another user owners are left as created. */
const canChown = () => process.geteuid?.() === 0;

/** Creates `dir` (mode 0700) or accepts it empty; refuses anything else. */
export async function prepareEmptyDir(dir: string): Promise<void> {
  const st = await lstat(dir).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return undefined;
    throw e;
  });
  if (st === undefined) {
    await mkdir(dir, { mode: 0o700 });
    return;
  }
  if (!st.isDirectory() || (await readdir(dir)).length > 0)
    throw new FerryError('ETC_OUT_NOT_EMPTY', `${dir} exists and is not an empty directory`);
}

/** Writes a file's bytes with the entry's mode, owner and mtime; the path must not exist. */
export async function writeFileEntry(path: string, data: Uint8Array, e: EtcEntry): Promise<void> {
  const fh = await open(path, 'wx', 0o600);
  try {
    await fh.writeFile(data);
    if (canChown()) await fh.chown(e.uid, e.gid);
    // After chown: chown clears setuid/setgid bits.
    await fh.chmod(e.mode);
    await fh.utimes(e.mtimeMs / 1000, e.mtimeMs / 1000);
  } finally {
    await fh.close();
  }
}

/** Creates a symlink with the target text verbatim; the target is never resolved. */
export async function writeSymlinkEntry(path: string, e: EtcEntry): Promise<void> {
  await symlink(e.target ?? '', path);
  if (canChown()) await lchown(path, e.uid, e.gid);
  await lutimes(path, e.mtimeMs / 1000, e.mtimeMs / 1000);
}

/** Creates a directory writable by us only; finishDir sets its real metadata after the children. */
export async function createDirEntry(path: string): Promise<void> {
  await mkdir(path, { mode: 0o700 });
}

/** Gives a directory its mode, owner and mtime, once nothing more is written into it. */
export async function finishDir(path: string, e: EtcEntry): Promise<void> {
  if (canChown()) await lchown(path, e.uid, e.gid);
  await chmod(path, e.mode);
  await utimes(path, e.mtimeMs / 1000, e.mtimeMs / 1000);
}

/** Creates `root` and the parent directories of `rel` under it (mode 0700, for records). */
export async function mkParents(root: string, rel: string): Promise<void> {
  await mkdir(dirname(join(root, rel)), { recursive: true, mode: 0o700 });
}
