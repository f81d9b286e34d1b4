import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { StatusReport } from './agent.ts';
import { channelOf, inFlight, outcome, withRepository } from './fleet-decide.ts';
import type { FleetAssignment } from './fleet-state.ts';
import type { SystemConfig } from './config.ts';

const INSTALLED = '2026-11-22T10:00:00.000Z';
const LATER = '2026-11-22T10:05:00.000Z';
const EARLIER = '2026-11-22T09:00:00.000Z';

const assignment = (state: FleetAssignment['state']): FleetAssignment => ({
  rolloutId: 'r1',
  version: '1.1.0',
  releaseCounter: 2,
  manifestSha256: 'ab'.repeat(32),
  slot: 'rootfs.0',
  state,
  installedAt: INSTALLED,
});

/** A device whose slot rootfs.0 holds `version`; `booted` names the running slot. */
function status(o: {
  booted: string;
  version?: string;
  pending?: string;
  staged?: string;
  good?: string;
  bad?: string;
}): StatusReport {
  const slot = (name: string) => ({
    name,
    class: 'rootfs',
    device: '/dev/disk',
    offset: 0,
    bootname: name === 'rootfs.0' ? 'A' : 'B',
    booted: o.booted === name,
    primary: false,
    record:
      name === 'rootfs.0'
        ? {
            status: 'installed' as const,
            release: {
              compatible: 'c',
              version: o.version ?? '1.1.0',
              releaseCounter: 2,
              manifestSha256: 'cd'.repeat(32),
            },
            ...(o.good ? { markedGoodAt: o.good } : {}),
            ...(o.bad ? { markedBadAt: o.bad } : {}),
          }
        : undefined,
  });
  return {
    compatible: 'c',
    bootloader: 'file',
    highWaterCounter: 1,
    installCount: 1,
    channel: 'stable',
    ...(o.pending ? { pendingSlot: o.pending } : {}),
    ...(o.staged ? { stagedSlot: o.staged } : {}),
    slots: [slot('rootfs.0'), slot('rootfs.1')],
  };
}

describe('outcome', () => {
  describe('when the installed slot waits for its reboot', () => {
    it('is undecided', () => {
      const s = status({ booted: 'rootfs.1', pending: 'rootfs.0' });
      assert.equal(outcome(assignment('rebooting'), s), undefined);
      assert.equal(inFlight(assignment('rebooting'), s), true);
    });
  });
  describe('when a staged slot was activated by the user', () => {
    it('moves on to rebooting', () =>
      assert.equal(
        outcome(assignment('installing'), status({ booted: 'rootfs.1', pending: 'rootfs.0' })),
        'rebooting',
      ));
  });
  describe('when the new slot runs', () => {
    it('is committed once marked good after the install, not before', () => {
      const a = assignment('rebooting');
      assert.equal(outcome(a, status({ booted: 'rootfs.0', good: LATER })), 'committed');
      assert.equal(outcome(a, status({ booted: 'rootfs.0', good: EARLIER })), undefined);
      assert.equal(outcome(a, status({ booted: 'rootfs.0' })), undefined);
    });
    it('is rolled back once a health check marked it bad', () =>
      assert.equal(
        outcome(assignment('rebooting'), status({ booted: 'rootfs.0', bad: LATER })),
        'rolled-back',
      ));
    it('is not committed when the slot holds another release', () =>
      assert.equal(
        outcome(assignment('rebooting'), status({ booted: 'rootfs.0', good: LATER, version: '9' })),
        undefined,
      ));
  });
  describe('when the old slot runs and nothing is pending', () => {
    it('is rolled back, and the assignment is no longer in flight', () => {
      const s = status({ booted: 'rootfs.1' });
      assert.equal(outcome(assignment('rebooting'), s), 'rolled-back');
      assert.equal(inFlight(assignment('rebooting'), s), false);
    });
    it('is undecided for a staged install whose slot was reused (it is installed again)', () => {
      const s = status({ booted: 'rootfs.1' });
      assert.equal(outcome(assignment('installing'), s), undefined);
      assert.equal(inFlight(assignment('installing'), s), false);
    });
  });
  describe('when the download had not finished', () => {
    it('is neither decided nor in flight', () => {
      const s = status({ booted: 'rootfs.1', pending: 'rootfs.0' });
      assert.equal(outcome(assignment('downloading'), s), undefined);
      assert.equal(inFlight(assignment('downloading'), s), false);
    });
  });
});

describe('channelOf', () => {
  it('reads the channel from the manifest path, and refuses a path in none', () => {
    const a = { manifestPath: 'channels/beta/c/1.1.0/manifest.json' } as never;
    assert.equal(channelOf(a), 'beta');
    assert.throws(
      () => channelOf({ manifestPath: 'elsewhere/manifest.json' } as never),
      (e: unknown) => (e as { code?: string }).code === 'DEVICE_ASSIGNMENT_MISMATCH',
    );
  });
});

describe('withRepository', () => {
  const config = (repository?: string) =>
    ({ update: { ...(repository ? { repository } : {}), channel: 'stable' } }) as SystemConfig;
  it("keeps system.toml's repository over the server's", () =>
    assert.equal(
      withRepository(config('https://r.example'), 'http://f', '/repo/').update.repository,
      'https://r.example',
    ));
  it("resolves the server's relative repository URL against the server", () =>
    assert.equal(
      withRepository(config(), 'http://10.0.2.2:8080', '/repo/').update.repository,
      'http://10.0.2.2:8080/repo',
    ));
});
