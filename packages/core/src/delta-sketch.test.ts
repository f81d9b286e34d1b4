import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chunkSketch, SimilarityIndex } from './delta-sketch.ts';

const a = randomBytes(64 * 1024);
const b = randomBytes(64 * 1024);
// a with 200 bytes overwritten and the second half shifted by 77 inserted bytes.
const aEdited = Buffer.concat([a.subarray(0, 32768), randomBytes(77), a.subarray(32768)]);
randomBytes(200).copy(aEdited, 1000);

describe('chunkSketch', () => {
  describe('when given random data', () => {
    it('has about one anchor per 256 bytes, sorted and distinct', () => {
      const s = chunkSketch(a);
      assert.ok(s.length > 150 && s.length < 400, `${s.length} anchors`);
      for (let i = 1; i < s.length; i++) assert.ok(s[i]! > s[i - 1]!);
    });
  });

  describe('when content is shifted', () => {
    it('keeps most anchors', () => {
      const sa = new Set(chunkSketch(a));
      const se = chunkSketch(aEdited);
      const shared = se.filter((x) => sa.has(x)).length;
      assert.ok(shared > 0.9 * sa.size, `${shared} of ${sa.size}`);
    });
  });

  describe('when bits is out of range', () => {
    it('throws USAGE', () => {
      assert.throws(() => chunkSketch(a, 3), { code: 'USAGE' });
    });
  });
});

describe('SimilarityIndex', () => {
  describe('when a base chunk shares content with the target', () => {
    it('picks it over unrelated chunks', () => {
      const idx = new SimilarityIndex<string>();
      idx.add('b', chunkSketch(b));
      idx.add('a', chunkSketch(a));
      assert.equal(idx.mostSimilar(chunkSketch(aEdited))?.key, 'a');
    });
  });

  describe('when nothing is similar', () => {
    it('returns undefined', () => {
      const idx = new SimilarityIndex<string>();
      idx.add('b', chunkSketch(b));
      assert.equal(idx.mostSimilar(chunkSketch(randomBytes(64 * 1024))), undefined);
    });
  });

  describe('when an anchor is in more chunks than maxPostings', () => {
    it('ignores it', () => {
      const common = Uint32Array.of(1, 2, 3);
      const capped = new SimilarityIndex<number>({ maxPostings: 2 });
      const open = new SimilarityIndex<number>({ maxPostings: 8 });
      for (let i = 0; i < 4; i++) capped.add(i, common);
      for (let i = 0; i < 4; i++) open.add(i, common);
      assert.equal(capped.mostSimilar(common, 1, 0), undefined);
      assert.equal(open.mostSimilar(common, 1, 0)?.key, 0);
    });
  });
});
