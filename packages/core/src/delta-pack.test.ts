import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chunkId } from './chunk-codec.ts';
import type { ChunkIndex, ChunkIndexEntry } from './chunk-index.ts';
import { decodeDeltaPack, encodeDeltaPack, planDeltaPack } from './delta-pack.ts';

const mk = (data: Buffer) => ({ id: chunkId(data), size: data.length, data });
const b1 = mk(randomBytes(20000));
const b2 = mk(randomBytes(20000));
const t1 = mk(Buffer.concat([b1.data.subarray(0, 19000), randomBytes(50)])); // similar to b1
const t2 = mk(randomBytes(20000)); // new content
const target: ChunkIndex = {
  params: { minSize: 64, avgSize: 16384, maxSize: 65536 },
  imageSize: b2.size + t1.size + t2.size + t1.size,
  imageSha256: '0'.repeat(64),
  chunks: [b2, t1, t2, t1].map(({ id, size }) => ({ id, size })),
};
const base = new Map([b1, b2].map((c) => [c.id, c.data]));
const all = new Map([b1, b2, t1, t2].map((c) => [c.id, c.data]));
const get = (e: ChunkIndexEntry) => all.get(e.id)!;
const similar = (id: string) => (id === t1.id ? { id: b1.id, size: b1.size } : undefined);
const have = (id: string) => base.has(id);

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

describe('planDeltaPack', () => {
  describe('when the device holds some chunks', () => {
    it('sends each missing chunk once, in image order, with its similar base as ref', () => {
      const segs = planDeltaPack(target, have, similar);
      assert.equal(segs.length, 1);
      assert.deepEqual(
        segs[0]!.out.map((c) => c.id),
        [t1.id, t2.id],
      );
      assert.deepEqual(
        segs[0]!.refs.map((c) => c.id),
        [b1.id],
      );
    });
  });

  describe('when the segment budget is small', () => {
    it('splits into segments within the budget', () => {
      const segs = planDeltaPack(target, have, similar, 45000);
      assert.equal(segs.length, 2);
      assert.deepEqual(segs[1]!.refs, []);
    });
  });
});

describe('decodeDeltaPack', () => {
  const pack = encodeDeltaPack(planDeltaPack(target, have, similar), get, get);

  describe('when the device holds the refs', () => {
    it('yields exactly the missing chunks, verified', () => {
      const out = decodeDeltaPack(pack, target, (id) => base.get(id));
      assert.deepEqual(
        out.map((c) => c.id),
        [t1.id, t2.id],
      );
      assert.deepEqual(out[0]!.data, t1.data);
    });

    it('is smaller than the two chunks sent as they are', () => {
      assert.ok(pack.length < t2.size + 2000, `${pack.length} bytes`);
    });
  });

  describe('when a ref is missing on the device', () => {
    it('throws DELTA_BASE_MISSING', () => {
      assert.equal(
        code(() => decodeDeltaPack(pack, target, () => undefined)),
        'DELTA_BASE_MISSING',
      );
    });
  });

  describe('when the pack yields a chunk the target does not list', () => {
    it('throws DELTA_UNEXPECTED_CHUNK', () => {
      const other = { ...target, chunks: target.chunks.filter((c) => c.id !== t2.id) };
      assert.equal(
        code(() => decodeDeltaPack(pack, other, (id) => base.get(id))),
        'DELTA_UNEXPECTED_CHUNK',
      );
    });
  });

  describe('when the pack is truncated, extended or has a bad magic', () => {
    it('throws DELTA_INVALID', () => {
      const get2 = (id: string) => base.get(id);
      assert.equal(
        code(() => decodeDeltaPack(pack.subarray(0, -1), target, get2)),
        'DELTA_INVALID',
      );
      assert.equal(
        code(() => decodeDeltaPack(Buffer.concat([pack, Buffer.alloc(1)]), target, get2)),
        'DELTA_INVALID',
      );
      const bad = Buffer.from(pack);
      bad[0] = 0;
      assert.equal(
        code(() => decodeDeltaPack(bad, target, get2)),
        'DELTA_INVALID',
      );
    });
  });

  describe('when a segment declares huge counts', () => {
    it('throws DELTA_INVALID before allocating', () => {
      const bad = Buffer.from(pack);
      bad.writeUInt32LE(0xffffffff, 16 + 4);
      assert.equal(
        code(() => decodeDeltaPack(bad, target, (id) => base.get(id))),
        'DELTA_INVALID',
      );
    });
  });

  describe('when a ref is replaced by another chunk the device holds', () => {
    it('never returns wrong bytes (CHUNK_HASH_MISMATCH or DELTA_INVALID)', () => {
      const bad = Buffer.from(pack);
      bad.write(b2.id, 32, 'hex');
      const c = code(() => decodeDeltaPack(bad, target, (id) => base.get(id)));
      assert.ok(c === 'CHUNK_HASH_MISMATCH' || c === 'DELTA_INVALID', String(c));
    });
  });
});
