import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chunkId, compressChunk, decompressChunkInto, zstdFrameLayout } from './chunk-codec.ts';
import { isFerryError, type ErrorCode } from './errors.ts';

const code = (c: ErrorCode) => (e: unknown) => isFerryError(e, c);

/** A hand-made single-segment frame (content size in one byte) with the given blocks. */
function frame(blocks: Array<{ type: 0 | 1; bytes: Buffer; size?: number }>, declared: number) {
  const parts: Buffer[] = [Buffer.of(0x28, 0xb5, 0x2f, 0xfd, 0x20, declared)];
  blocks.forEach((b, i) => {
    const size = b.size ?? b.bytes.length;
    const bh = (i === blocks.length - 1 ? 1 : 0) | (b.type << 1) | (size << 3);
    parts.push(Buffer.of(bh & 0xff, (bh >> 8) & 0xff, (bh >> 16) & 0xff), b.bytes);
  });
  return Buffer.concat(parts);
}

describe('decompressChunkInto', () => {
  describe('when zstd stored the chunk raw (incompressible data)', () => {
    const data = randomBytes(200 * 1024);
    const f = compressChunk(data);
    it('holds only raw blocks', () => {
      assert.ok(zstdFrameLayout(f).blocks.every((b) => b.type === 0));
    });
    it('copies it into the buffer at the offset, verified', () => {
      const out = Buffer.alloc(data.length + 10, 0xee);
      decompressChunkInto(chunkId(data), f, data.length, out, 7);
      assert.ok(out.subarray(7, 7 + data.length).equals(data));
      assert.equal(out[6], 0xee);
      assert.equal(out[7 + data.length], 0xee);
    });
  });
  describe('when the chunk is compressed', () => {
    it('decompresses it into the buffer at the offset', () => {
      const data = Buffer.from('compressible '.repeat(5000));
      const out = Buffer.alloc(data.length + 3);
      decompressChunkInto(chunkId(data), compressChunk(data), data.length, out, 3);
      assert.ok(out.subarray(3).equals(data));
    });
  });
  describe('when the frame holds raw and RLE blocks', () => {
    it('decodes both', () => {
      const data = Buffer.concat([Buffer.from('abc'), Buffer.alloc(40, 9)]);
      const f = frame(
        [
          { type: 0, bytes: Buffer.from('abc') },
          { type: 1, bytes: Buffer.of(9), size: 40 },
        ],
        43,
      );
      const out = Buffer.alloc(43);
      decompressChunkInto(chunkId(data), f, 43, out, 0);
      assert.ok(out.equals(data));
    });
  });
  describe('when a stored frame decodes past its chunk', () => {
    it('throws CHUNK_CORRUPT and writes nothing outside the chunk', () => {
      const f = frame([{ type: 1, bytes: Buffer.of(1), size: 100 }], 10);
      const out = Buffer.alloc(30, 0xee);
      assert.throws(
        () => decompressChunkInto(chunkId(Buffer.alloc(10, 1)), f, 10, out, 10),
        code('CHUNK_CORRUPT'),
      );
      assert.ok(out.subarray(0, 10).equals(Buffer.alloc(10, 0xee)));
      assert.ok(out.subarray(20).equals(Buffer.alloc(10, 0xee)));
    });
  });
  describe('when the frame declares more than the chunk (decompression bomb)', () => {
    it('throws CHUNK_CORRUPT', () => {
      const f = frame([{ type: 0, bytes: Buffer.from('abcd') }], 200);
      assert.throws(
        () => decompressChunkInto(chunkId(Buffer.from('abcd')), f, 4, Buffer.alloc(4), 0),
        code('CHUNK_CORRUPT'),
      );
    });
  });
  describe('when a stored frame is shorter than the chunk', () => {
    it('throws CHUNK_HASH_MISMATCH', () => {
      const f = frame([{ type: 0, bytes: Buffer.from('abc') }], 3);
      assert.throws(
        () => decompressChunkInto(chunkId(Buffer.from('abcd')), f, 4, Buffer.alloc(4), 0),
        code('CHUNK_HASH_MISMATCH'),
      );
    });
  });
  describe('when the decoded bytes do not hash to the id', () => {
    for (const [kind, data] of [
      ['stored raw', randomBytes(70 * 1024)],
      ['compressed', Buffer.from('compressible '.repeat(3000))],
    ] as const)
      it(`throws CHUNK_HASH_MISMATCH (${kind})`, () => {
        assert.throws(
          () =>
            decompressChunkInto(
              chunkId(Buffer.from('other')),
              compressChunk(data),
              data.length,
              Buffer.alloc(data.length),
              0,
            ),
          code('CHUNK_HASH_MISMATCH'),
        );
      });
  });
  describe('when the buffer has no room for the chunk', () => {
    it('throws INTERNAL before decoding', () => {
      const data = Buffer.from('abcd');
      assert.throws(
        () => decompressChunkInto(chunkId(data), compressChunk(data), 4, Buffer.alloc(6), 3),
        code('INTERNAL'),
      );
    });
  });
});
