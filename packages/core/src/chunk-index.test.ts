import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  chunkOffsets,
  parseChunkIndex,
  serializeChunkIndex,
  type ChunkIndex,
} from './chunk-index.ts';
import { isFerryError } from './errors.ts';

const hex64 = fc
  .uint8Array({ minLength: 32, maxLength: 32 })
  .map((b) => Buffer.from(b).toString('hex'));

/** Arbitrary valid indexes: params first, then chunk sizes within them. */
const arbIndex: fc.Arbitrary<ChunkIndex> = fc
  .record({
    minSize: fc.integer({ min: 64, max: 2048 }),
    avgBits: fc.integer({ min: 11, max: 14 }),
    extra: fc.nat(5000),
  })
  .chain(({ minSize, avgBits, extra }) => {
    const params = { minSize, avgSize: 2 ** avgBits, maxSize: 2 ** avgBits + extra };
    const entry = fc
      .tuple(hex64, fc.integer({ min: minSize, max: params.maxSize }))
      .map(([id, size]) => ({ id, size }));
    return fc
      .tuple(
        fc.array(entry, { maxLength: 12 }),
        fc.integer({ min: 1, max: params.maxSize }),
        fc.boolean(),
        hex64,
      )
      .map(([body, lastSize, short, imageSha256]) => {
        const chunks =
          short && body.length > 0
            ? [...body.slice(0, -1), { id: body.at(-1)!.id, size: lastSize }]
            : body;
        const imageSize = chunks.reduce((s, c) => s + c.size, 0);
        return { params, imageSize, imageSha256, chunks };
      });
  });

const sample: ChunkIndex = {
  params: { minSize: 1024, avgSize: 4096, maxSize: 16384 },
  imageSize: 1024 + 16384 + 10,
  imageSha256: 'ab'.repeat(32),
  chunks: [
    { id: '01'.repeat(32), size: 1024 },
    { id: '02'.repeat(32), size: 16384 },
    { id: '03'.repeat(32), size: 10 },
  ],
};

const isIndexError = (e: unknown) =>
  isFerryError(e, 'CHUNK_INDEX_INVALID') || isFerryError(e, 'CHUNK_INDEX_FORMAT_VERSION');
const invalid = (e: unknown) => isFerryError(e, 'CHUNK_INDEX_INVALID');

describe('chunk index', () => {
  describe('when a valid index is serialized', () => {
    it('has the documented layout', () => {
      const b = serializeChunkIndex(sample);
      assert.equal(b.length, 72 + 36 * 3);
      assert.equal(b.toString('ascii', 0, 8), 'FERRYCIX');
      assert.equal(b.readUInt16LE(8), 1);
      assert.equal(b.readUInt32LE(12), 3);
      assert.equal(b.readUInt32LE(24), 16384);
      assert.equal(b.readBigUInt64LE(32), 17418n);
      assert.equal(b.toString('hex', 72 + 36, 72 + 36 + 32), '02'.repeat(32));
      assert.equal(b.readUInt32LE(72 + 36 * 2 + 32), 10);
    });
    it('parses back to the same index', () => {
      fc.assert(
        fc.property(arbIndex, (index) => {
          assert.deepEqual(parseChunkIndex(serializeChunkIndex(index)), index);
        }),
      );
    });
  });

  describe('when the bytes are arbitrary', () => {
    it('throws only chunk index errors', () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 300 }), fc.boolean(), (bytes, magic) => {
          const b = Buffer.from(bytes);
          if (magic && b.length >= 10) b.write('FERRYCIX\x01\x00', 0, 'latin1');
          try {
            const index = parseChunkIndex(b);
            assert.ok(serializeChunkIndex(index).equals(b));
          } catch (e) {
            assert.ok(isIndexError(e), String(e));
          }
        }),
      );
    });
  });

  describe('when one byte of a valid index is changed', () => {
    it('parses to an index that encodes to exactly those bytes, or throws a chunk index error', () => {
      fc.assert(
        fc.property(arbIndex, fc.nat(), fc.integer({ min: 1, max: 255 }), (index, at, xor) => {
          const b = serializeChunkIndex(index);
          b[at % b.length]! ^= xor;
          try {
            assert.ok(serializeChunkIndex(parseChunkIndex(b)).equals(b));
          } catch (e) {
            assert.ok(isIndexError(e), String(e));
          }
        }),
        { numRuns: 500 },
      );
    });
  });

  describe('when the index is malformed', () => {
    const good = serializeChunkIndex(sample);
    const mutate = (f: (b: Buffer) => void) => {
      const b = Buffer.from(good);
      f(b);
      return b;
    };
    const cases: [string, Buffer][] = [
      ['bad magic', mutate((b) => b.write('X', 0))],
      ['truncated header', good.subarray(0, 40)],
      ['truncated entries', good.subarray(0, good.length - 1)],
      ['trailing bytes', Buffer.concat([good, Buffer.of(0)])],
      ['reserved bytes set', mutate((b) => (b[28] = 1))],
      ['sizes not summing to image size', mutate((b) => b.writeBigUInt64LE(17419n, 32))],
      ['a middle chunk below minSize', mutate((b) => b.writeUInt32LE(1023, 72 + 32))],
      ['a chunk above maxSize', mutate((b) => b.writeUInt32LE(16385, 72 + 36 + 32))],
      ['a zero-size last chunk', mutate((b) => b.writeUInt32LE(0, 72 + 72 + 32))],
      ['avgSize not a power of two', mutate((b) => b.writeUInt32LE(4097, 20))],
      ['image size past 2^53', mutate((b) => b.writeBigUInt64LE(2n ** 60n, 32))],
    ];
    for (const [name, bytes] of cases)
      it(`throws CHUNK_INDEX_INVALID for ${name}`, () => {
        assert.throws(() => parseChunkIndex(bytes), invalid);
      });
    it('throws CHUNK_INDEX_INVALID when the count exceeds the limit', () => {
      assert.throws(() => parseChunkIndex(good, { maxChunks: 2 }), invalid);
      assert.equal(parseChunkIndex(good, { maxChunks: 3 }).chunks.length, 3);
    });
    it('throws CHUNK_INDEX_FORMAT_VERSION for version 2', () => {
      const b = mutate((x) => x.writeUInt16LE(2, 8));
      assert.throws(
        () => parseChunkIndex(b),
        (e) => isFerryError(e, 'CHUNK_INDEX_FORMAT_VERSION'),
      );
    });
  });

  describe('when serializing an invalid index', () => {
    it('throws CHUNK_INDEX_INVALID for an upper-case id', () => {
      const bad = {
        ...sample,
        chunks: [{ id: 'AB'.repeat(32), size: 1024 }, ...sample.chunks.slice(1)],
      };
      assert.throws(() => serializeChunkIndex(bad), invalid);
    });
  });

  describe('chunkOffsets', () => {
    it('gives the start of each chunk', () => {
      assert.deepEqual(chunkOffsets(sample), [0, 1024, 17408]);
    });
  });

  describe('when the index is empty', () => {
    it('round-trips an empty image', () => {
      const empty = { ...sample, imageSize: 0, chunks: [] };
      assert.deepEqual(parseChunkIndex(serializeChunkIndex(empty)), empty);
    });
  });
});
