import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cutInstants, installProgress, mulberry32 } from './power-cut.ts';

describe('cutInstants', () => {
  describe('when called twice with one seed', () => {
    it('returns the same instants', () => {
      assert.deepEqual(cutInstants(7, 5, 40), cutInstants(7, 5, 40));
    });
  });
  describe('when seeds differ', () => {
    it('returns different instants', () => {
      assert.notDeepEqual(cutInstants(7, 5, 40), cutInstants(8, 5, 40));
    });
  });
  describe('when spreading 5 instants over 40 s', () => {
    it('puts one in each 8 s band', () => {
      const t = cutInstants(123, 5, 40);
      t.forEach((x, i) => assert.ok(x >= i * 8 && x < (i + 1) * 8, `${x} in band ${i}`));
    });
  });
});

describe('mulberry32', () => {
  describe('when drawn 1000 times', () => {
    it('stays in [0, 1)', () => {
      const r = mulberry32(1);
      for (let i = 0; i < 1000; i++) {
        const x = r();
        assert.ok(x >= 0 && x < 1);
      }
    });
  });
});

describe('installProgress', () => {
  describe('when given the events of an install in order', () => {
    it('rises from 0 to 1.05', () => {
      const lines = [
        '{"id":"install.started","time":"x"}',
        '{"id":"install.progress","phase":"download","done":5,"total":10}',
        '{"id":"install.progress","phase":"verify","done":10,"total":10}',
        '{"id":"install.committed","target":"rootfs.1"}',
        '{"id":"install.result","ok":true}',
      ];
      assert.deepEqual(
        lines.map((l) => installProgress(l)),
        [0, 0.35, 0.95, 1, 1.05],
      );
    });
  });
  describe('when given another line', () => {
    it('returns undefined', () => {
      assert.equal(installProgress('FERRY-GRUB: slot=A'), undefined);
      assert.equal(installProgress('{"id":"install.'), undefined);
    });
  });
});
