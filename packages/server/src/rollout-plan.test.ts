import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  decideRollout,
  inPhase,
  inWindow,
  reportApplies,
  type RolloutStats,
} from './rollout-plan.ts';

const base: RolloutStats = {
  phases: [1, 10, 50, 100],
  phase: 0,
  successThreshold: 0.9,
  failureThreshold: 0.1,
  minReports: 3,
  targetedInPhase: 10,
  committed: 0,
  bad: 0,
  ackFinal: 0,
  ackBad: 0,
  inProgress: 10,
};

describe('decideRollout', () => {
  describe('when enough devices of the phase committed', () => {
    it('advances, and completes after the last phase', () => {
      assert.deepEqual(decideRollout({ ...base, committed: 9 }), { kind: 'advance', phase: 1 });
      assert.deepEqual(decideRollout({ ...base, committed: 8 }), { kind: 'none' });
      assert.deepEqual(decideRollout({ ...base, phase: 3, committed: 10, inProgress: 0 }), {
        kind: 'complete',
      });
    });
  });
  describe('when failures pass the threshold', () => {
    it('pauses once minReports are in, counting only reports since the last resume', () => {
      assert.equal(decideRollout({ ...base, committed: 1, bad: 1 }).kind, 'none');
      assert.equal(decideRollout({ ...base, committed: 2, bad: 1 }).kind, 'pause');
      assert.equal(
        decideRollout({ ...base, committed: 20, bad: 2, ackBad: 2, ackFinal: 4 }).kind,
        'advance',
      );
    });
  });
});

describe('inPhase', () => {
  it('reaches about the phase share of buckets, growing monotonically', () => {
    const count = (p: number) =>
      Array.from({ length: 10000 }, (_, b) => inPhase(b, 1234, p)).filter(Boolean).length;
    assert.equal(count(1), 100);
    assert.equal(count(100), 10000);
    for (let b = 0; b < 10000; b += 37) if (inPhase(b, 99, 10)) assert.ok(inPhase(b, 99, 50));
  });
});

describe('inWindow', () => {
  const monday10 = Date.UTC(2026, 10, 23, 10, 0);
  it('is open inside a window, closed outside, and handles windows past midnight', () => {
    assert.equal(inWindow([], monday10), true);
    assert.equal(inWindow([{ days: [1], start: '09:00', end: '11:00' }], monday10), true);
    assert.equal(inWindow([{ days: [2], start: '09:00', end: '11:00' }], monday10), false);
    assert.equal(inWindow([{ days: [0], start: '22:00', end: '11:00' }], monday10), true);
  });
});

describe('reportApplies', () => {
  it('never changes a final state and never moves progress backwards', () => {
    assert.equal(reportApplies('committed', 'failed'), false);
    assert.equal(reportApplies('installing', 'downloading'), false);
    assert.equal(reportApplies('downloading', 'downloading'), true);
    assert.equal(reportApplies('assigned', 'rolled-back'), true);
  });
});
