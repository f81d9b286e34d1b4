/**
 * A content-addressed chunk store on a local file system: one zstd frame per chunk at
 * `DIR/chunks/ab/cdef....zst` (docs/formats/chunk-store.md). Writes are atomic (temp file in the
 * same directory, fsync, rename, fsync directory), reads verify the chunk against its id.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { FerryError, withContext } from './errors.ts';
import {
  chunkId,
  compressChunkAsync,
  decompressChunk,
  DEFAULT_CHUNK_ZSTD_LEVEL,
} from './chunk-codec.ts';
import { MAX_CHUNK_SIZE } from './chunker.ts';

/** Options of a ChunkStore. */
export interface ChunkStoreOptions {
  /** fsync each chunk file and its directory before a put resolves (default true). */
  fsync?: boolean;
  /** zstd level for `put` (default 3). */
  level?: number;
}

const ID = /^[0-9a-f]{64}$/;
const SUBDIR = /^[0-9a-f]{2}$/;
const FILE = /^[0-9a-f]{62}\.zst$/;

/** Upper bound of a zstd frame holding `size` bytes (ZSTD_COMPRESSBOUND plus slack). */
function frameBound(size: number): number {
  return size + (size >>> 8) + 1024;
}

function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code;
}

async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * A directory of compressed, content-addressed chunks.
 *
 * @example
 * const store = new ChunkStore('/var/lib/ferry/store');
 * for await (const c of chunkStream(createReadStream(img))) await store.put(c.id, c.data);
 * const bytes = await store.get(id);
 */
export class ChunkStore {
  readonly dir: string;
  readonly #fsync: boolean;
  readonly #level: number;
  readonly #madeDirs = new Set<string>();

  constructor(dir: string, options: ChunkStoreOptions = {}) {
    this.dir = dir;
    this.#fsync = options.fsync ?? true;
    this.#level = options.level ?? DEFAULT_CHUNK_ZSTD_LEVEL;
  }

  /** Where chunk `id` lives. Throws USAGE unless `id` is 64 lowercase hex digits. */
  pathOf(id: string): string {
    // Attack stopped: an id like "../../etc" must never become a path.
    if (!ID.test(id)) throw new FerryError('USAGE', `not a chunk id: ${JSON.stringify(id)}`);
    return join(this.dir, 'chunks', id.slice(0, 2), `${id.slice(2)}.zst`);
  }

  /** Whether chunk `id` is present (not whether it is intact: `get` verifies). */
  async has(id: string): Promise<boolean> {
    try {
      return (await stat(this.pathOf(id))).isFile();
    } catch (e) {
      if (errno(e) === 'ENOENT') return false;
      throw withContext(`checking chunk ${id}`, e);
    }
  }

  /**
   * Stores `data` as chunk `id`. Throws CHUNK_HASH_MISMATCH if `data` does not hash to `id`.
   * A no-op (`written: false`) if the chunk is already present. Two puts of one id racing each
   * other may both report `written: true`; the store still ends with one intact file.
   */
  async put(id: string, data: Uint8Array): Promise<{ written: boolean; compressedSize: number }> {
    const path = this.pathOf(id);
    const actual = chunkId(data);
    if (actual !== id)
      throw new FerryError('CHUNK_HASH_MISMATCH', `chunk ${id} hashes to ${actual}`);
    const existing = await stat(path).catch(() => undefined);
    if (existing?.isFile()) return { written: false, compressedSize: existing.size };
    const compressed = await compressChunkAsync(data, this.#level);
    await this.#writeAtomic(id, path, compressed);
    return { written: true, compressedSize: compressed.length };
  }

  /**
   * Stores an already compressed chunk (one zstd frame) after checking it decompresses, within
   * `maxSize`, to bytes hashing to `id`. Throws CHUNK_CORRUPT or CHUNK_HASH_MISMATCH.
   */
  async putCompressed(
    id: string,
    compressed: Uint8Array,
    maxSize: number,
  ): Promise<{ written: boolean }> {
    const path = this.pathOf(id);
    decompressChunk(id, compressed, maxSize);
    if (await this.has(id)) return { written: false };
    await this.#writeAtomic(id, path, compressed);
    return { written: true };
  }

  /**
   * Reads, decompresses and verifies chunk `id`. Throws CHUNK_MISSING, CHUNK_CORRUPT or
   * CHUNK_HASH_MISMATCH.
   */
  async get(id: string, maxSize = MAX_CHUNK_SIZE): Promise<Buffer> {
    return decompressChunk(id, await this.#read(id, frameBound(maxSize)), maxSize);
  }

  /**
   * The stored zstd frame of chunk `id`, unverified (the reader verifies with decompressChunk).
   * Throws CHUNK_MISSING, or CHUNK_CORRUPT if the file is larger than any chunk's frame can be.
   */
  async getCompressed(id: string): Promise<Buffer> {
    return this.#read(id, frameBound(MAX_CHUNK_SIZE));
  }

  /** Removes chunk `id`; removing an absent chunk is not an error. */
  async delete(id: string): Promise<void> {
    try {
      await unlink(this.pathOf(id));
    } catch (e) {
      if (errno(e) !== 'ENOENT') throw withContext(`deleting chunk ${id}`, e);
    }
  }

  /** Yields the id of every stored chunk, in no particular order; ignores foreign files. */
  async *list(): AsyncGenerator<string> {
    const root = join(this.dir, 'chunks');
    const subdirs = await readdir(root).catch((e: unknown) => {
      if (errno(e) === 'ENOENT') return [];
      throw withContext(`listing ${root}`, e);
    });
    for (const sub of subdirs.filter((s) => SUBDIR.test(s))) {
      const names = await readdir(join(root, sub)).catch(() => []);
      for (const name of names) if (FILE.test(name)) yield sub + name.slice(0, 62);
    }
  }

  async #read(id: string, limit: number): Promise<Buffer> {
    const path = this.pathOf(id);
    let fh;
    try {
      fh = await open(path, 'r');
    } catch (e) {
      if (errno(e) === 'ENOENT') throw new FerryError('CHUNK_MISSING', `chunk ${id} not in store`);
      throw withContext(`reading chunk ${id}`, e);
    }
    try {
      // Attack stopped: a replaced chunk file of gigabytes read into memory.
      const { size } = await fh.stat();
      if (size > limit) throw new FerryError('CHUNK_CORRUPT', `chunk ${id} file is ${size} bytes`);
      const buf = Buffer.alloc(size);
      const { bytesRead } = await fh.read(buf, 0, size, 0);
      if (bytesRead !== size) throw new FerryError('CHUNK_CORRUPT', `chunk ${id} file shrank`);
      return buf;
    } catch (e) {
      throw withContext(`reading chunk ${id}`, e);
    } finally {
      await fh.close();
    }
  }

  async #writeAtomic(id: string, path: string, bytes: Uint8Array): Promise<void> {
    const dir = join(this.dir, 'chunks', id.slice(0, 2));
    const tmp = join(
      dir,
      `.tmp-${id.slice(2, 18)}-${process.pid}-${randomBytes(6).toString('hex')}`,
    );
    try {
      await this.#ensureDir(dir);
      const fh = await open(tmp, 'wx', 0o644);
      try {
        await fh.writeFile(bytes);
        if (this.#fsync) await fh.sync();
      } finally {
        await fh.close();
      }
      // Invariant: the final name only ever appears with complete, synced contents.
      await rename(tmp, path);
      if (this.#fsync) await fsyncPath(dir);
    } catch (e) {
      await rm(tmp, { force: true });
      throw withContext(`writing chunk ${id}`, e);
    }
  }

  async #ensureDir(dir: string): Promise<void> {
    if (this.#madeDirs.has(dir)) return;
    const created = await mkdir(dir, { recursive: true });
    // A new directory is only durable once its parent directory is synced.
    if (created !== undefined && this.#fsync) {
      await fsyncPath(dirname(created));
      if (created !== dir) await fsyncPath(join(this.dir, 'chunks'));
    }
    this.#madeDirs.add(dir);
  }
}
