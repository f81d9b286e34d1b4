import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  firstCheckDelay,
  formatWindow,
  inWindow,
  msUntilWindow,
  nextCheckDelay,
} from './daemon-schedule.ts';

const cfg = { intervalSeconds: 3600, jitterSeconds: 600 };
const at = (h: number, m: number) => new Date(2026, 2, 10, h, m, 0, 0);
const MIN = 60_000;

describe('nextCheckDelay', () => {
  describe('when the last cycle succeeded', () => {
    it('waits the interval plus a share of the jitter set by the random source', () => {
      assert.equal(
        nextCheckDelay(cfg, 0, () => 0),
        3600_000,
      );
      assert.equal(
        nextCheckDelay(cfg, 0, () => 0.5),
        3900_000,
      );
      assert.ok(nextCheckDelay(cfg, 0, () => 0.999999) < 4200_000);
    });
  });
  describe('when cycles failed in a row', () => {
    it('retries after 60 s, then doubles, capped at the interval', () => {
      const d = [1, 2, 3, 7, 100].map((n) => nextCheckDelay(cfg, n, () => 0));
      assert.deepEqual(d, [60_000, 120_000, 240_000, 3600_000, 3600_000]);
    });
    it('adds jitter no larger than the backoff step', () => {
      assert.equal(
        nextCheckDelay(cfg, 1, () => 0.5),
        90_000,
      );
      assert.equal(
        nextCheckDelay({ intervalSeconds: 3600, jitterSeconds: 10 }, 1, () => 0.5),
        65_000,
      );
    });
  });
});

describe('firstCheckDelay', () => {
  it('is only the jitter', () => {
    assert.equal(
      firstCheckDelay(cfg, () => 0.25),
      150_000,
    );
    assert.equal(
      firstCheckDelay({ jitterSeconds: 0 }, () => 0.9),
      0,
    );
  });
});

describe('maintenance window', () => {
  const night = { start: 2 * 60, end: 4 * 60 + 30 };
  const wrap = { start: 23 * 60, end: 1 * 60 };
  describe('when the window lies inside one day', () => {
    it('is open from start (inclusive) to end (exclusive)', () => {
      assert.equal(inWindow(at(1, 59), night), false);
      assert.equal(inWindow(at(2, 0), night), true);
      assert.equal(inWindow(at(4, 29), night), true);
      assert.equal(inWindow(at(4, 30), night), false);
    });
    it('waits until today’s start before it, tomorrow’s after it, and not at all inside', () => {
      assert.equal(msUntilWindow(at(1, 0), night), 60 * MIN);
      assert.equal(msUntilWindow(at(3, 0), night), 0);
      assert.equal(msUntilWindow(at(12, 0), night), 14 * 60 * MIN);
    });
  });
  describe('when the end is before the start (wraps past midnight)', () => {
    it('is open late in the evening and early in the morning', () => {
      assert.equal(inWindow(at(23, 30), wrap), true);
      assert.equal(inWindow(at(0, 30), wrap), true);
      assert.equal(inWindow(at(1, 0), wrap), false);
      assert.equal(inWindow(at(22, 59), wrap), false);
    });
    it('waits until the evening start', () => {
      assert.equal(msUntilWindow(at(1, 0), wrap), 22 * 60 * MIN);
      assert.equal(msUntilWindow(at(0, 10), wrap), 0);
    });
  });
  it('formats as written in system.toml', () => {
    assert.equal(formatWindow(night), '02:00-04:30');
    assert.equal(formatWindow(wrap), '23:00-01:00');
  });
});
