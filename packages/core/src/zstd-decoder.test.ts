import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { zstdCompressSync } from 'node:zlib';
import { chunkId, compressChunk, decompressChunkInto, zstdFrameLayout } from './chunk-codec.ts';
import { isFerryError, type ErrorCode } from './errors.ts';
import { ZstdDecoder } from './zstd-decoder.ts';

const code = (c: ErrorCode) => (e: unknown) => isFerryError(e, c);

/** Compressible bytes with some noise: frames of compressed blocks, not stored ones. */
const sample = (n: number, seed: number) =>
  Buffer.concat([randomBytes(512), Buffer.alloc(n - 512, seed)]);

/** The same, without randomness: the damage below then fails the same way every run. */
const fixed = (n: number) =>
  Buffer.concat([
    ...Array.from({ length: 16 }, (_, i) => createHash('sha256').update(String(i)).digest()),
    Buffer.alloc(n - 512, 8),
  ]);

/** `f` with its first compressed block's type made the reserved one: no decoder takes it. */
function reservedBlock(f: Buffer): Buffer {
  const b = zstdFrameLayout(f).blocks.find((x) => x.type === 2);
  assert.ok(b, 'the frame holds a compressed block');
  const damaged = Buffer.from(f);
  damaged[b.start - 3]! |= 0b110;
  return damaged;
}

function decoder(): ZstdDecoder {
  const d = ZstdDecoder.create();
  assert.ok(d, "this Node's zlib has the native handle the decoder drives");
  return d;
}

describe('ZstdDecoder', () => {
  describe('when it decodes many frames in a row', () => {
    it('writes each into the shared buffer at its offset and nothing around it', () => {
      const d = decoder();
      const out = Buffer.from(new SharedArrayBuffer(300_000)).fill(0xee);
      let at = 5;
      const chunks = [sample(60_000, 1), sample(100_000, 2), sample(1_000, 3), sample(130_000, 4)];
      for (const c of chunks) {
        d.decode('c', compressChunk(c), c.length, out, at);
        at += c.length;
      }
      assert.ok(out.subarray(5, at).equals(Buffer.concat(chunks)));
      assert.equal(out[4], 0xee);
      assert.equal(out[at], 0xee);
    });
  });

  describe('when the frame decodes to more than the chunk', () => {
    it('throws CHUNK_CORRUPT, writing nothing past the chunk', () => {
      const data = sample(50_000, 5);
      // No content size in the header, so only decoding shows that it is too long.
      const f = zstdCompressSync(data, { pledgedSrcSize: undefined });
      const out = Buffer.alloc(50_010, 0xee);
      assert.throws(() => decoder().decode('c', f, 40_000, out, 10), code('CHUNK_CORRUPT'));
      assert.ok(out.subarray(40_010).equals(Buffer.alloc(10_000, 0xee)));
    });
  });

  describe('when the frame decodes to fewer bytes than the chunk', () => {
    it('throws CHUNK_HASH_MISMATCH', () => {
      const data = sample(20_000, 6);
      assert.throws(
        () => decoder().decode('c', compressChunk(data), 20_001, Buffer.alloc(20_001), 0),
        code('CHUNK_HASH_MISMATCH'),
      );
    });
  });

  describe('when the frame is corrupt or cut short', () => {
    it('throws CHUNK_CORRUPT, and the context is not used again', () => {
      const data = sample(70_000, 7);
      const f = compressChunk(data);
      const damaged = reservedBlock(f);
      const d = decoder();
      const out = Buffer.alloc(data.length);
      assert.throws(() => d.decode('c', damaged, data.length, out, 0), code('CHUNK_CORRUPT'));
      assert.equal(d.broken, true);
      assert.throws(() => d.decode('c', f, data.length, out, 0), code('INTERNAL'));
      const cut = f.subarray(0, f.length - 9);
      assert.throws(() => decoder().decode('c', cut, data.length, out, 0), code('CHUNK_CORRUPT'));
    });
  });

  describe('when a frame asks for a window over 16 MiB', () => {
    /** A frame of one raw block whose header asks for a window of 2^log bytes. */
    const windowed = (log: number, bytes: Buffer) =>
      Buffer.concat([
        Buffer.of(0x28, 0xb5, 0x2f, 0xfd, 0x00, (log - 10) << 3),
        Buffer.of(((bytes.length << 3) | 1) & 0xff, (bytes.length << 3) >> 8, 0),
        bytes,
      ]);
    it('refuses it with CHUNK_CORRUPT, even after the context decoded other frames', () => {
      const bytes = Buffer.from('window');
      const d = decoder();
      const out = Buffer.alloc(bytes.length);
      d.decode('c', windowed(24, bytes), bytes.length, out, 0);
      assert.ok(out.equals(bytes), 'a 16 MiB window is a valid chunk frame');
      assert.throws(
        () => d.decode('c', windowed(27, bytes), bytes.length, out, 0),
        code('CHUNK_CORRUPT'),
      );
    });
  });
});

describe('decompressChunkInto with compressed frames', () => {
  describe('when a frame fails and the next one is good', () => {
    it('refuses the bad one and decodes the good one with a fresh context', () => {
      const data = fixed(80_512);
      const f = compressChunk(data);
      // A well-formed frame whose first block's literals header is zero: only decoding fails.
      const damaged = Buffer.from(f);
      damaged[zstdFrameLayout(f).blocks.find((x) => x.type === 2)!.start] = 0;
      const out = Buffer.alloc(data.length);
      assert.throws(
        () => decompressChunkInto(chunkId(data), damaged, data.length, out, 0),
        code('CHUNK_CORRUPT'),
      );
      decompressChunkInto(chunkId(data), f, data.length, out, 0);
      assert.ok(out.equals(data));
    });
  });
});
