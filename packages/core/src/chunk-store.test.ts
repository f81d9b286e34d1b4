import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { constants, zstdCompressSync } from 'node:zlib';
import { ChunkStore } from './chunk-store.ts';
import {
  chunkId,
  compressChunk,
  compressChunkAsync,
  decompressChunk,
  inspectZstdFrame,
} from './chunk-codec.ts';
import { isFerryError, type ErrorCode } from './errors.ts';

async function toArray<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}
const code = (c: ErrorCode) => (e: unknown) => isFerryError(e, c);
const bytes = (s: string, n = 1) => Buffer.from(s.repeat(n));

describe('chunk codec', () => {
  const data = bytes('hello chunk ', 1000);
  const id = chunkId(data);

  describe('when a chunk round-trips', () => {
    it('decompresses to the same bytes', () => {
      assert.ok(decompressChunk(id, compressChunk(data), data.length).equals(data));
    });
    it('gives the same frame, declaring its size, sync and async', async () => {
      const frame = compressChunk(data);
      assert.ok(frame.equals(await compressChunkAsync(data)));
      assert.equal(inspectZstdFrame(frame), data.length);
    });
    it('compresses deterministically', () => {
      assert.ok(compressChunk(data).equals(compressChunk(Buffer.from(data))));
      assert.ok(compressChunk(data, 19).length <= compressChunk(data, 1).length);
    });
  });
  describe('when the output would exceed maxSize (decompression bomb)', () => {
    it('throws CHUNK_CORRUPT', () => {
      const bomb = Buffer.alloc(8 * 1024 * 1024);
      assert.throws(
        () => decompressChunk(chunkId(bomb), compressChunk(bomb), 65536),
        code('CHUNK_CORRUPT'),
      );
    });
    it('throws CHUNK_CORRUPT when the frame hides its content size', () => {
      const bomb = Buffer.alloc(1024 * 1024);
      const frame = zstdCompressSync(bomb, { params: { [constants.ZSTD_c_contentSizeFlag]: 0 } });
      assert.throws(() => decompressChunk(chunkId(bomb), frame, 65536), code('CHUNK_CORRUPT'));
    });
  });
  describe('when the bytes are not one zstd frame', () => {
    const frame = compressChunk(data);
    const cases: [string, Buffer][] = [
      ['garbage', bytes('not zstd at all')],
      ['empty', Buffer.alloc(0)],
      ['truncated', frame.subarray(0, frame.length - 1)],
      ['trailing bytes', Buffer.concat([frame, Buffer.of(0)])],
      ['two frames', Buffer.concat([frame, frame])],
    ];
    for (const [name, b] of cases)
      it(`throws CHUNK_CORRUPT for ${name}`, () => {
        assert.throws(() => decompressChunk(id, b, 1 << 20), code('CHUNK_CORRUPT'));
      });
  });
  describe('when the id is wrong', () => {
    it('throws CHUNK_HASH_MISMATCH', () => {
      assert.throws(
        () => decompressChunk(chunkId(bytes('other')), compressChunk(data), 1 << 20),
        code('CHUNK_HASH_MISMATCH'),
      );
    });
  });
});

describe('ChunkStore', () => {
  let dir: string;
  let store: ChunkStore;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ferry-store-'));
    store = new ChunkStore(dir);
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  const a = bytes('chunk a ', 5000);
  const idA = chunkId(a);

  describe('when a chunk is put', () => {
    it('stores it at chunks/ab/rest.zst and gets it back', async () => {
      assert.deepEqual((await store.put(idA, a)).written, true);
      assert.equal(store.pathOf(idA), join(dir, 'chunks', idA.slice(0, 2), `${idA.slice(2)}.zst`));
      assert.ok((await store.get(idA)).equals(a));
      assert.ok(decompressChunk(idA, await store.getCompressed(idA), a.length).equals(a));
      assert.equal(await store.has(idA), true);
    });
    it('leaves no temp files', async () => {
      assert.deepEqual(await readdir(join(dir, 'chunks', idA.slice(0, 2))), [
        `${idA.slice(2)}.zst`,
      ]);
    });
    it('is a no-op the second time', async () => {
      assert.equal((await store.put(idA, a)).written, false);
    });
  });
  describe('when the data does not match the id', () => {
    it('throws CHUNK_HASH_MISMATCH and writes nothing', async () => {
      const id = chunkId(bytes('x'));
      await assert.rejects(store.put(id, bytes('y')), code('CHUNK_HASH_MISMATCH'));
      assert.equal(await store.has(id), false);
    });
  });
  describe('when the id is not 64 hex digits', () => {
    it('throws USAGE', async () => {
      await assert.rejects(store.has('../../etc/passwd'), code('USAGE'));
      assert.throws(() => store.pathOf(idA.toUpperCase()), code('USAGE'));
    });
  });
  describe('when a chunk is missing', () => {
    it('throws CHUNK_MISSING', async () => {
      await assert.rejects(store.get('0'.repeat(64)), code('CHUNK_MISSING'));
    });
  });
  describe('when a stored file is corrupted on disk', () => {
    it('detects a flipped byte on get', async () => {
      const d = bytes('soon corrupted ', 3000);
      const id = chunkId(d);
      await store.put(id, d);
      const file = await readFile(store.pathOf(id));
      file[file.length - 3]! ^= 0x40;
      await writeFile(store.pathOf(id), file);
      await assert.rejects(
        store.get(id),
        (e) => isFerryError(e, 'CHUNK_CORRUPT') || isFerryError(e, 'CHUNK_HASH_MISMATCH'),
      );
    });
    it('throws CHUNK_HASH_MISMATCH when another chunk was put in its place', async () => {
      const d = bytes('victim ', 100);
      const id = chunkId(d);
      await store.put(id, d);
      await writeFile(store.pathOf(id), compressChunk(bytes('impostor ', 100)));
      await assert.rejects(store.get(id), code('CHUNK_HASH_MISMATCH'));
    });
  });
  describe('when the same chunk is put concurrently', () => {
    it('ends with one intact file and no temp files', async () => {
      const d = bytes('concurrent ', 20000);
      const id = chunkId(d);
      const results = await Promise.all(Array.from({ length: 8 }, () => store.put(id, d)));
      assert.ok(results.some((r) => r.written));
      assert.ok((await store.get(id)).equals(d));
      assert.deepEqual(
        await readdir(join(dir, 'chunks', id.slice(0, 2))).then((n) =>
          n.filter((x) => x.startsWith('.')),
        ),
        [],
      );
    });
  });
  describe('when a compressed chunk is put', () => {
    it('verifies it first', async () => {
      const d = bytes('precompressed ', 100);
      const id = chunkId(d);
      await assert.rejects(
        store.putCompressed(id, compressChunk(bytes('other')), 1 << 20),
        code('CHUNK_HASH_MISMATCH'),
      );
      await assert.rejects(store.putCompressed(id, bytes('junk'), 1 << 20), code('CHUNK_CORRUPT'));
      assert.equal(await store.has(id), false);
      assert.equal((await store.putCompressed(id, compressChunk(d), 1 << 20)).written, true);
      assert.ok((await store.get(id)).equals(d));
    });
  });
  describe('when chunks are listed and deleted', () => {
    it('lists exactly the stored ids and forgets deleted ones', async () => {
      const s = new ChunkStore(await mkdtemp(join(tmpdir(), 'ferry-store-')), { fsync: false });
      assert.deepEqual(await toArray(s.list()), []);
      const ids = ['one', 'two', 'three'].map((w) => bytes(w, 50));
      for (const d of ids) await s.put(chunkId(d), d);
      await writeFile(join(s.dir, 'chunks', 'stray-file'), 'x');
      const listed = (await toArray(s.list())).sort();
      assert.deepEqual(listed, ids.map((d) => chunkId(d)).sort());
      await s.delete(listed[0]!);
      await s.delete(listed[0]!);
      assert.deepEqual((await toArray(s.list())).sort(), listed.slice(1));
      await rm(s.dir, { recursive: true });
    });
  });
});

describe('chunk codec output sizes', () => {
  describe('when the compressed frame would end on a 16 KiB buffer boundary', () => {
    it('still emits exactly one frame (no trailing empty frame), sync and async', async () => {
      const { randomBytes } = await import('node:crypto');
      const { chunkId, compressChunk, compressChunkAsync, decompressChunk } =
        await import('./chunk-codec.ts');
      // Incompressible input of L bytes becomes a raw-block frame of L + 10 bytes: 16384 and 32768.
      for (const size of [16374, 32758, 65526]) {
        const data = randomBytes(size);
        for (const frame of [compressChunk(data), await compressChunkAsync(data)]) {
          assert.equal(frame.length, size + 10, `frame for ${size} bytes`);
          assert.ok(decompressChunk(chunkId(data), frame, size).equals(data));
        }
      }
    });
  });
});
