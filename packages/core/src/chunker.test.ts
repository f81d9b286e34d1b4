import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import {
  Chunker,
  chunkerMasks,
  chunkStream,
  DEFAULT_CHUNKER_PARAMS,
  validateChunkerParams,
  type Chunk,
  type ChunkerParams,
} from './chunker.ts';
import { GEAR } from './gear-table.ts';
import { isFerryError } from './errors.ts';

const SMALL: ChunkerParams = { minSize: 1024, avgSize: 4096, maxSize: 16384 };

/** Deterministic pseudo-random bytes (xorshift32), so golden values are reproducible. */
function prng(size: number, seed = 1): Buffer {
  const out = Buffer.allocUnsafe(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

// eslint-disable-next-line @typescript-eslint/require-await -- an async source, as a file stream is
async function* pieces(data: Buffer, sizes: number[]): AsyncGenerator<Uint8Array> {
  let pos = 0;
  for (let k = 0; pos < data.length; k++) {
    const n = sizes.length ? Math.max(1, sizes[k % sizes.length]!) : data.length;
    yield data.subarray(pos, pos + n);
    pos += n;
  }
}

async function collect(src: AsyncIterable<Uint8Array>, p?: ChunkerParams): Promise<Chunk[]> {
  const out: Chunk[] = [];
  for await (const c of chunkStream(src, p)) out.push(c);
  return out;
}

/**
 * The boundary rule exactly as docs/formats/chunk-index.md states it, one byte at a time with no
 * optimisation: the reference the fast Chunker must agree with.
 */
function referenceSizes(data: Uint8Array, p: ChunkerParams): number[] {
  const { maskS, maskL } = chunkerMasks(p.avgSize);
  const sizes: number[] = [];
  for (let start = 0; start < data.length;) {
    const limit = Math.min(data.length - start, p.maxSize);
    let size = limit;
    let h = 0;
    for (let len = p.minSize; len <= limit; len++) {
      h = ((h << 1) + GEAR[data[start + len - 1]!]!) >>> 0;
      if ((h & (len < p.avgSize ? maskS : maskL)) >>> 0 === 0) {
        size = len;
        break;
      }
    }
    sizes.push(size);
    start += size;
  }
  return sizes;
}

const sha = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');

describe('gear table', () => {
  it('is the table derived from the documented seed', () => {
    assert.equal(GEAR.length, 256);
    for (const i of [0, 1, 255]) {
      const d = createHash('sha256').update('ferry-gear-v1:').update(Uint8Array.of(i)).digest();
      assert.equal(GEAR[i], d.readUInt32LE(0));
    }
    assert.equal(sha(Buffer.from(GEAR.buffer)), GOLDEN_GEAR_SHA256);
  });
});

describe('chunkerMasks', () => {
  it('gives avg-bits + 2 and avg-bits - 2 top bits', () => {
    assert.deepEqual(chunkerMasks(65536), { maskS: 0xffffc000, maskL: 0xfffc0000 });
  });
});

describe('validateChunkerParams', () => {
  describe('when params are valid', () => {
    it('returns a copy', () => {
      assert.deepEqual(validateChunkerParams(DEFAULT_CHUNKER_PARAMS), DEFAULT_CHUNKER_PARAMS);
      assert.deepEqual(validateChunkerParams({ minSize: 64, avgSize: 64, maxSize: 64 }), {
        minSize: 64,
        avgSize: 64,
        maxSize: 64,
      });
    });
  });
  describe('when params are invalid', () => {
    const cases: [string, ChunkerParams][] = [
      ['min below 64', { minSize: 63, avgSize: 4096, maxSize: 8192 }],
      ['avg not a power of two', { minSize: 1024, avgSize: 5000, maxSize: 8192 }],
      ['min above avg', { minSize: 8192, avgSize: 4096, maxSize: 16384 }],
      ['avg above max', { minSize: 1024, avgSize: 4096, maxSize: 2048 }],
      ['max above 16 MiB', { minSize: 1024, avgSize: 4096, maxSize: 16 * 1024 * 1024 + 1 }],
      ['non-integer', { minSize: 1024.5, avgSize: 4096, maxSize: 8192 }],
    ];
    for (const [name, p] of cases)
      it(`throws USAGE for ${name}`, () => {
        assert.throws(
          () => validateChunkerParams(p),
          (e) => isFerryError(e, 'USAGE'),
        );
      });
  });
});

describe('Chunker', () => {
  describe('when the input is all zeros', () => {
    it('cuts at maxSize', () => {
      const c = new Chunker(SMALL);
      const cuts = c.push(new Uint8Array(SMALL.maxSize * 3 + 5));
      assert.deepEqual(cuts, [SMALL.maxSize, SMALL.maxSize * 2, SMALL.maxSize * 3]);
      assert.equal(c.finish(), 5);
    });
  });
  describe('when the input is empty', () => {
    it('yields no chunk', async () => {
      assert.equal(new Chunker().finish(), 0);
      assert.deepEqual(await collect(pieces(Buffer.alloc(0), [])), []);
    });
  });
});

describe('chunkStream', () => {
  const data = prng(2 * 1024 * 1024, 7);

  it('keeps every chunk within min and max, except a short last one', async () => {
    const chunks = await collect(pieces(data, []), SMALL);
    assert.ok(chunks.length > 100);
    for (const c of chunks.slice(0, -1)) {
      assert.ok(c.size >= SMALL.minSize && c.size <= SMALL.maxSize, `size ${c.size}`);
    }
    assert.ok(chunks.at(-1)!.size <= SMALL.maxSize);
  });

  it('yields contiguous chunks whose id is the sha256 of their bytes', async () => {
    const chunks = await collect(pieces(data, [65536]), SMALL);
    let offset = 0;
    for (const c of chunks) {
      assert.equal(c.offset, offset);
      assert.equal(c.size, c.data.length);
      assert.equal(c.id, sha(c.data));
      offset += c.size;
    }
    assert.equal(offset, data.length);
    assert.ok(Buffer.concat(chunks.map((c) => c.data)).equals(data));
  });

  describe('when the input arrives in different buffer splits', () => {
    it('gives identical chunks', async () => {
      const whole = (await collect(pieces(data, []), SMALL)).map((c) => c.id);
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.integer({ min: 1, max: 40000 }), { minLength: 1, maxLength: 8 }),
          async (sizes) => {
            const split = (await collect(pieces(data, sizes), SMALL)).map((c) => c.id);
            assert.deepEqual(split, whole);
          },
        ),
        { numRuns: 25 },
      );
    });
  });

  describe('when bytes are inserted near the start', () => {
    it('keeps most chunk ids', async () => {
      const big = prng(8 * 1024 * 1024, 11);
      const edited = Buffer.concat([
        big.subarray(0, 5000),
        Buffer.from('inserted!'),
        big.subarray(5000),
      ]);
      const before = await collect(pieces(big, [1 << 20]));
      const after = new Set((await collect(pieces(edited, [1 << 20]))).map((c) => c.id));
      const kept = before.filter((c) => after.has(c.id)).length;
      assert.ok(before.length > 50);
      assert.ok(kept >= before.length - 3, `${kept} of ${before.length} kept`);
    });
  });

  describe('compared with the one-byte-at-a-time reference rule', () => {
    const inputs: [string, Buffer][] = [
      ['random', data],
      ['text-like', Buffer.from('lorem ipsum dolor sit amet '.repeat(40000))],
      ['sparse', Buffer.concat([Buffer.alloc(70000), data.subarray(0, 50000), Buffer.alloc(9000)])],
    ];
    const paramSets: ChunkerParams[] = [
      SMALL,
      { minSize: 64, avgSize: 64, maxSize: 64 },
      { minSize: 64, avgSize: 256, maxSize: 256 },
      { minSize: 100, avgSize: 512, maxSize: 3000 },
      DEFAULT_CHUNKER_PARAMS,
    ];
    for (const [name, input] of inputs)
      it(`agrees on ${name} input for every param set`, async () => {
        for (const p of paramSets) {
          const sizes = (await collect(pieces(input, [777, 65536]), p)).map((c) => c.size);
          assert.deepEqual(sizes, referenceSizes(input, p), JSON.stringify(p));
        }
      });
  });

  describe('with the default params on fixed input', () => {
    it('cuts exactly where format version 1 says (golden)', async () => {
      const chunks = await collect(pieces(prng(16 * 1024 * 1024, 3), [100000]));
      assert.equal(sha(chunks.map((c) => c.size).join(',')), GOLDEN_DEFAULT_SIZES);
    });
  });

  describe('with small params on fixed input', () => {
    it('cuts exactly where format version 1 says (golden)', async () => {
      const chunks = await collect(pieces(prng(1024 * 1024, 5), [4096]), SMALL);
      assert.equal(sha(chunks.map((c) => c.size).join(',')), GOLDEN_SMALL_SIZES);
    });
  });
});

// Pinned values: if one of these changes, chunk boundaries changed and format version 1 broke.
const GOLDEN_GEAR_SHA256 = 'b5a949f0fd95cd42c2b5647f0b8a48803209ba780676bf7b941b2beb347c243f';
const GOLDEN_DEFAULT_SIZES = '3fabb78b37abdd0dc5bc2acc0d3f2c3740d2b14813a6bd61c9788bea08e3fc8e';
const GOLDEN_SMALL_SIZES = '1e3936baf18bb1694413b5cb51b58913370635f48478d51df28ddd7f610bf49d';
