/**
 * A content digest of a directory tree (names, types, owners, modes, device numbers, link
 * targets, file bytes; never mtimes or inode numbers), used to derive a deterministic
 * filesystem UUID: the same tree gives the same UUID whether it came from a directory or a tar.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';

async function walk(h: Hash, root: string, rel: string): Promise<void> {
  const abs = rel === '' ? root : `${root}/${rel}`;
  const st = await lstat(abs);
  const kind = st.isDirectory() ? 'd' : st.isSymbolicLink() ? 'l' : st.isFile() ? 'f' : 'o';
  // A directory's st_size depends on the host filesystem and its history: left out.
  const size = kind === 'd' ? 0 : st.size;
  h.update(`${kind}\0${rel}\0${st.mode}\0${st.uid}\0${st.gid}\0${st.rdev}\0${size}\0`);
  if (kind === 'l') h.update(`${await readlink(abs)}\0`);
  if (kind === 'f') for await (const c of createReadStream(abs)) h.update(c as Buffer);
  if (kind !== 'd') return;
  const names = (await readdir(abs)).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  for (const n of names) await walk(h, root, rel === '' ? n : `${rel}/${n}`);
}

/** sha256 over the tree at `root` plus `salt` (build parameters). */
export async function treeDigest(root: string, salt: string): Promise<Buffer> {
  const h = createHash('sha256');
  h.update(`ferry-tree-v1\0${salt}\0`);
  await walk(h, root, '');
  return h.digest();
}

/** An RFC 9562 version-8 UUID string made from the first 16 bytes of `digest`. */
export function uuidFromDigest(digest: Buffer): string {
  const b = Buffer.from(digest.subarray(0, 16));
  b[6] = (b[6]! & 0x0f) | 0x80;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const x = b.toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}
