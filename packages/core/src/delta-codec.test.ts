import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chunkId, compressChunk } from './chunk-codec.ts';
import { decodeChunkDelta, encodeChunkDelta } from './delta-codec.ts';

const base = randomBytes(64 * 1024);
// The target: the base with a few bytes changed and 1 KiB inserted in the middle.
const target = Buffer.concat([base.subarray(0, 30000), randomBytes(1024), base.subarray(30000)]);
target[100] = 0xff - target[100]!;

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

describe('encodeChunkDelta', () => {
  describe('when the target is a small edit of the base', () => {
    it('is far smaller than the target compressed alone', () => {
      const delta = encodeChunkDelta(base, target);
      assert.ok(delta.length < 2000, `delta is ${delta.length} bytes`);
      assert.ok(compressChunk(target).length > 60000);
    });

    it('decodes back to the target and checks its id', () => {
      const delta = encodeChunkDelta(base, target);
      assert.deepEqual(decodeChunkDelta(base, delta, target.length, chunkId(target)), target);
    });

    it('is deterministic', () => {
      assert.deepEqual(encodeChunkDelta(base, target), encodeChunkDelta(base, target));
    });
  });

  describe('when the base starts with the zstd dictionary magic', () => {
    it('still treats it as raw content', () => {
      const magic = Buffer.concat([Buffer.from([0x37, 0xa4, 0x30, 0xec]), base]);
      const delta = encodeChunkDelta(magic, target);
      assert.deepEqual(decodeChunkDelta(magic, delta, target.length), target);
    });
  });

  describe('when the base is empty', () => {
    it('is a plain zstd frame that decodes without a base', () => {
      const delta = encodeChunkDelta(new Uint8Array(0), target);
      assert.deepEqual(decodeChunkDelta(new Uint8Array(0), delta, target.length), target);
    });
  });
});

describe('decodeChunkDelta', () => {
  const delta = encodeChunkDelta(base, target);

  describe('when the output would exceed maxSize', () => {
    it('throws DELTA_INVALID', () => {
      assert.equal(
        code(() => decodeChunkDelta(base, delta, target.length - 1)),
        'DELTA_INVALID',
      );
    });
  });

  describe('when decoded against another base', () => {
    it('throws DELTA_INVALID or CHUNK_HASH_MISMATCH, never returns other bytes as the chunk', () => {
      const other = randomBytes(base.length);
      const c = code(() => decodeChunkDelta(other, delta, target.length, chunkId(target)));
      assert.ok(c === 'DELTA_INVALID' || c === 'CHUNK_HASH_MISMATCH', String(c));
    });
  });

  describe('when the delta is truncated or has trailing bytes', () => {
    it('throws DELTA_INVALID', () => {
      assert.equal(
        code(() => decodeChunkDelta(base, delta.subarray(0, -3), 1 << 20)),
        'DELTA_INVALID',
      );
      const longer = Buffer.concat([delta, Buffer.from([0])]);
      assert.equal(
        code(() => decodeChunkDelta(base, longer, 1 << 20)),
        'DELTA_INVALID',
      );
    });
  });

  describe('when the id does not match', () => {
    it('throws CHUNK_HASH_MISMATCH', () => {
      const wrong = chunkId(base);
      assert.equal(
        code(() => decodeChunkDelta(base, delta, target.length, wrong)),
        'CHUNK_HASH_MISMATCH',
      );
    });
  });
});
