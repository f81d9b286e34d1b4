/**
 * What an image build reads from: a directory, a rootfs tarball, an OCI image layout (a
 * directory, or a tar of one) or a `docker save` archive. Detection never trusts file names:
 * it looks at the content.
 */
import { constants } from 'node:fs';
import { lstat, open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { FerryError } from '@ferry/core';
import { decodedStream, fileBlob, sniffCompression, type BlobRef } from './blob.ts';
import { readTar } from './tar-reader.ts';

/** The kinds of input `buildImage` accepts. */
export type InputKind = 'directory' | 'tar' | 'oci-layout' | 'docker-archive';

/** Named members of an OCI layout or docker-archive, by relative name ("blobs/sha256/<hex>"). */
export interface BlobSource {
  get(name: string): Promise<BlobRef>;
}

// Every member of a docker-archive or OCI layout tar has one of these names; anything else
// (such as "./" or "etc/passwd") means a rootfs tarball. Also the only names ever opened.
const MEMBER =
  /^(manifest\.json|repositories|index\.json|oci-layout|[0-9a-f]{64}\.json|[0-9a-f]{64}|[0-9a-f]{64}\/(VERSION|json|layer\.tar)|blobs|blobs\/sha256|blobs\/sha256\/[0-9a-f]{64})$/;

function invalid(msg: string): FerryError {
  return new FerryError('IMAGE_INPUT_INVALID', msg);
}

interface ArchiveScan {
  kind: InputKind;
  members: Map<string, { start: number; size: number; file?: string }>;
}

async function scanArchive(path: string): Promise<ArchiveScan> {
  const ref = await fileBlob(path);
  if (ref.size === 0) throw invalid(`${path} is empty`);
  const comp = await sniffCompression(ref);
  const members: ArchiveScan['members'] = new Map();
  let seen = 0;
  try {
    for await (const { entry } of readTar(decodedStream(ref, comp))) {
      seen++;
      const name = entry.path.replace(/^(\.\/)+/, '').replace(/\/+$/, '');
      if (name === '' || name === '.') continue; // the archive's own root directory
      if (!MEMBER.test(name)) return { kind: 'tar', members };
      if (entry.type === 'file') members.set(name, { start: entry.dataOffset, size: entry.size });
    }
  } catch (e) {
    if (seen > 0) throw e;
    throw invalid(`${path} is not a directory, tar archive, OCI layout or docker-archive`);
  }
  if (members.has('manifest.json')) return { kind: 'docker-archive', members };
  if (members.has('index.json') && members.has('oci-layout'))
    return { kind: 'oci-layout', members };
  return { kind: 'tar', members };
}

/**
 * Detects what `path` holds. IMAGE_INPUT_INVALID if it is none of the accepted kinds.
 *
 * @example
 * await detectInputKind('rootfs.tar.zst'); // 'tar'
 */
export async function detectInputKind(path: string): Promise<InputKind> {
  const st = await stat(path).catch((e: unknown) => {
    throw invalid(`${path} cannot be read: ${(e as Error).message}`);
  });
  if (st.isDirectory()) {
    const layout = await lstat(join(path, 'oci-layout')).catch(() => null);
    const index = await lstat(join(path, 'index.json')).catch(() => null);
    return layout?.isFile() && index?.isFile() ? 'oci-layout' : 'directory';
  }
  if (!st.isFile()) throw invalid(`${path} is neither a file nor a directory`);
  return (await scanArchive(path)).kind;
}

function checkName(name: string): void {
  if (!MEMBER.test(name)) throw invalid(`refusing to open member ${JSON.stringify(name)}`);
}

function dirSource(root: string): BlobSource {
  return {
    async get(name) {
      checkName(name);
      const path = join(root, name);
      const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW).catch(() => null);
      if (!fh) throw invalid(`${path} is missing or not a regular file`);
      try {
        const st = await fh.stat();
        if (!st.isFile()) throw invalid(`${path} is not a regular file`);
        return { name, path, start: 0, size: st.size };
      } finally {
        await fh.close();
      }
    },
  };
}

// A compressed archive cannot be read at offsets: its members are copied out once.
async function copyMembers(path: string, scratch: string): Promise<ArchiveScan['members']> {
  const ref = await fileBlob(path);
  const out: ArchiveScan['members'] = new Map();
  for await (const { entry, body } of readTar(decodedStream(ref, await sniffCompression(ref)))) {
    const name = entry.path.replace(/^(\.\/)+/, '').replace(/\/+$/, '');
    if (entry.type !== 'file' || !MEMBER.test(name)) continue;
    const file = join(scratch, name.replaceAll('/', '_'));
    const fh = await open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o600);
    try {
      for await (const piece of body) await fh.write(piece);
    } finally {
      await fh.close();
    }
    out.set(name, { start: 0, size: entry.size, file });
  }
  return out;
}

/**
 * Opens the members of an OCI layout or docker-archive at `path` (directory or tar, plain or
 * compressed); `scratch` is a private directory for members of compressed archives.
 */
export async function openBlobSource(path: string, scratch: string): Promise<BlobSource> {
  if ((await stat(path)).isDirectory()) return dirSource(path);
  const compressed = (await sniffCompression(await fileBlob(path))) !== 'none';
  const members = compressed ? await copyMembers(path, scratch) : (await scanArchive(path)).members;
  return {
    get(name) {
      checkName(name);
      const m = members.get(name);
      if (!m) return Promise.reject(invalid(`${path} has no member ${name}`));
      return Promise.resolve({ name, path: m.file ?? path, start: m.start, size: m.size });
    },
  };
}
