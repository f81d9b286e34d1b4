import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isFerryError } from '@ferry/core';
import { deltaPackPath, planDeltaPairs } from './repo-delta.ts';
import type { PublishedRelease } from './release.ts';

const rel = (channel: string, compatible: string, version: string, releaseCounter: number) =>
  ({
    channel,
    compatible,
    version,
    releaseCounter,
    paths: [],
    chunkIndexes: {},
  }) as PublishedRelease;

const stable = [
  rel('stable', 'gw', '1.0.0', 1),
  rel('stable', 'gw', '1.2.0', 3),
  rel('stable', 'gw', '1.1.0', 2),
  rel('stable', 'cam', '2.0.0', 1),
];
const all = [...stable, rel('beta', 'gw', '1.3.0-rc.1', 4)];
const names = (pairs: ReturnType<typeof planDeltaPairs>) =>
  pairs.map((p) => `${p.to.compatible} ${p.from.version}->${p.to.version}`);

describe('planDeltaPairs', () => {
  describe('when neither --from nor --last is given', () => {
    it('pairs the newest release of each compatible with the one before it', () => {
      assert.deepEqual(names(planDeltaPairs(stable, all, {})), ['gw 1.1.0->1.2.0']);
    });
  });

  describe('when --last 5 asks for more releases than there are', () => {
    it('pairs every earlier release of the compatible', () => {
      assert.deepEqual(names(planDeltaPairs(stable, all, { last: 5 })), [
        'gw 1.0.0->1.2.0',
        'gw 1.1.0->1.2.0',
      ]);
    });
  });

  describe('when --from names a release of another channel and --to an older target', () => {
    it('finds the base anywhere and skips compatibles without the target', () => {
      assert.deepEqual(names(planDeltaPairs(stable, all, { from: ['1.3.0-rc.1'], to: '1.1.0' })), [
        'gw 1.3.0-rc.1->1.1.0',
      ]);
    });
  });

  describe('when a version is missing', () => {
    for (const [what, o] of [
      ['--to', { to: '9.9.9' }],
      ['--from', { from: ['0.1.0'] }],
    ] as const)
      it(`refuses ${what} with REPO_RELEASE_NOT_FOUND`, () => {
        assert.throws(
          () => planDeltaPairs(stable, all, o),
          (e) => isFerryError(e, 'REPO_RELEASE_NOT_FOUND'),
        );
      });
  });

  describe('when --last is not a positive integer', () => {
    it('refuses it with USAGE', () => {
      assert.throws(
        () => planDeltaPairs(stable, all, { last: 0 }),
        (e) => isFerryError(e, 'USAGE'),
      );
    });
  });
});

describe('deltaPackPath', () => {
  describe('when a digest is not 64 lowercase hex digits', () => {
    it('refuses it with USAGE (the name must not climb out of deltas/)', () => {
      assert.throws(
        () => deltaPackPath('../x', 'a'.repeat(64)),
        (e) => isFerryError(e, 'USAGE'),
      );
      assert.equal(
        deltaPackPath('a'.repeat(64), 'b'.repeat(64)),
        `deltas/${'a'.repeat(64)}/${'b'.repeat(64)}.fdp`,
      );
    });
  });
});
