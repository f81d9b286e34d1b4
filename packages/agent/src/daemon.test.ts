import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FerryError, isFerryError } from '@ferry/core';
import { imageLikeBytes, makeDevice, needs, type DeviceFixture } from '@ferry/testing';
import { Agent } from './agent.ts';
import { Daemon, type StampedEvent } from './daemon.ts';
import type { DaemonClock } from './daemon-schedule.ts';
import { FeedAgent, latch } from './daemon-test-agent.ts';

const sfdisk = needs('sfdisk');

/** Time that moves only when the test says so. */
class ManualClock implements DaemonClock {
  t: number;
  readonly #waiters: Array<{ at: number; wake: () => void }> = [];
  constructor(start: Date) {
    this.t = start.getTime();
  }
  now(): number {
    return this.t;
  }
  sleep(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((wake) => {
      if (signal.aborted) return wake();
      this.#waiters.push({ at: this.t + ms, wake });
      signal.addEventListener('abort', () => wake(), { once: true });
    });
  }
  /** Moves time on and wakes every sleeper that is due. */
  advance(ms: number): void {
    this.t += ms;
    for (const w of this.#waiters.filter((x) => x.at <= this.t)) {
      this.#waiters.splice(this.#waiters.indexOf(w), 1);
      w.wake();
    }
  }
}

/** The first event matching `pred`, subscribed now (before the action that causes it). */
function next(d: Daemon, pred: (e: StampedEvent) => boolean): Promise<StampedEvent> {
  return new Promise((resolve) => {
    const off = d.subscribe((e) => pred(e) && (off(), resolve(e)));
  });
}
const id = (x: string) => (e: StampedEvent) => e.id === x;
const state = (s: string) => (e: StampedEvent) =>
  e.id === 'daemon.state' && (e as { state?: string }).state === s;

interface Setup {
  dev: DeviceFixture;
  feed: FeedAgent;
  daemon: Daemon;
  clock: ManualClock;
  events: StampedEvent[];
  rebooted: () => boolean;
}

const open: Setup[] = [];

async function setup(daemonToml: string, start = new Date(2026, 2, 10, 12, 0)): Promise<Setup> {
  const dev = await makeDevice({
    slotMiB: 4,
    extraToml: `[daemon]\ninterval = 600\njitter = 60\n${daemonToml}\n`,
  });
  const image = join(dev.root, 'v1.img');
  await writeFile(image, imageLikeBytes(1024 * 1024, 31));
  const bundle = await dev.bundle(image, { version: '1.0.0', counter: 1 });
  const feed = new FeedAgent(await Agent.open({ root: dev.root }), {
    bundle,
    version: '1.0.0',
    counter: 1,
  });
  const clock = new ManualClock(start);
  const daemon = new Daemon(feed, { clock, random: () => 0.5 });
  const events: StampedEvent[] = [];
  daemon.subscribe((e) => events.push(e));
  const marker = join(dev.root, 'rebooted');
  process.env.FERRY_REBOOT_COMMAND = `touch ${marker}`;
  const s = { dev, feed, daemon, clock, events, rebooted: () => existsSync(marker) };
  open.push(s);
  return s;
}

/** Starts the daemon and runs its first scheduled cycle (after 30 s: half the 60 s jitter). */
async function firstCycle(s: Setup, until: (e: StampedEvent) => boolean): Promise<void> {
  await s.daemon.start();
  const done = next(s.daemon, until);
  s.clock.advance(30_000);
  await done;
  await s.daemon.idle();
}

after(async () => {
  for (const s of open) {
    await s.daemon.stop();
    await s.dev.cleanup();
  }
  delete process.env.FERRY_REBOOT_COMMAND;
});

describe('Daemon', () => {
  describe('when install is auto and reboot is never', () => {
    let s: Setup;
    before(async () => {
      if (!sfdisk.skip) s = await setup('install = "auto"\nreboot = "never"');
    });
    it(
      'installs the new release on the first cycle and reports a reboot required',
      sfdisk,
      async () => {
        await firstCycle(s, state('reboot-required'));
        const st = await s.daemon.status();
        assert.equal(st.system.primary, 'B');
        assert.equal(st.system.pendingSlot, 'rootfs.1');
        assert.equal(st.daemon.pending?.version, '1.0.0');
        assert.equal(s.rebooted(), false);
        const ids = s.events.map((e) => e.id);
        assert.ok(ids.includes('install.progress'), ids.join(','));
        assert.ok(
          ids.indexOf('install.committed') < ids.lastIndexOf('daemon.state'),
          ids.join(','),
        );
      },
    );
    it('schedules the next check an interval plus jitter later', sfdisk, () => {
      const sched = s.events.filter((e) => e.id === 'daemon.check-scheduled');
      assert.deepEqual(
        sched.map((e) => (e as { inSeconds?: number }).inSeconds),
        [30, 630],
      );
    });
    it('does not write the slot again for the same release on the next cycle', sfdisk, async () => {
      const done = next(s.daemon, id('daemon.operation-finished'));
      s.clock.advance(630_000);
      await done;
      assert.deepEqual(
        s.feed.calls.filter((c) => c.startsWith('update')),
        ['update'],
      );
    });
    it('picks the pending commit up again after a restart, without rebooting', sfdisk, async () => {
      const again = new Daemon(new FeedAgent(await Agent.open({ root: s.dev.root })), {
        clock: s.clock,
      });
      await again.start();
      assert.equal(again.daemonStatus().state, 'reboot-required');
      assert.equal(again.daemonStatus().pending?.slot, 'rootfs.1');
      await again.stop();
      assert.equal(s.rebooted(), false);
    });
  });

  describe('when reboot is now', () => {
    it('reboots right after the commit', sfdisk, async () => {
      const s = await setup('install = "auto"\nreboot = "now"');
      await firstCycle(s, id('daemon.rebooting'));
      assert.equal(s.rebooted(), true);
      assert.equal(s.daemon.daemonStatus().state, 'rebooting');
    });
  });

  describe('when reboot waits for a maintenance window', () => {
    it('commits at noon and reboots only when the 02:00 window opens', sfdisk, async () => {
      const s = await setup('install = "auto"\nreboot = "window"\nwindow = "02:00-04:00"');
      await firstCycle(s, state('reboot-scheduled'));
      const at = s.daemon.daemonStatus().rebootAt!;
      assert.equal(new Date(at).getTime(), new Date(2026, 2, 11, 2, 0).getTime());
      s.clock.advance(new Date(2026, 2, 11, 1, 59).getTime() - s.clock.now());
      await new Promise((r) => setImmediate(r));
      assert.equal(s.rebooted(), false, 'not before the window');
      const rebooting = next(s.daemon, id('daemon.rebooting'));
      s.clock.advance(60_000);
      await rebooting;
      await s.daemon.idle();
      assert.equal(s.rebooted(), true);
    });
  });

  describe('when install is download-only', () => {
    let s: Setup;
    before(async () => {
      if (!sfdisk.skip) s = await setup('install = "download-only"\nreboot = "never"');
    });
    it('stages the release without switching the bootloader', sfdisk, async () => {
      await firstCycle(s, state('staged'));
      const st = await s.daemon.status();
      assert.equal(st.system.installCount, 0);
      assert.notEqual(st.system.primary, 'B');
      assert.equal(st.daemon.staged?.version, '1.0.0');
      assert.deepEqual(s.feed.calls, ['check', 'update:stage', 'check']);
    });
    it('does not stage the same release again on the next cycle', sfdisk, async () => {
      const done = next(s.daemon, id('daemon.operation-finished'));
      s.clock.advance(630_000);
      await done;
      assert.equal(s.feed.calls.filter((c) => c === 'update:stage').length, 1);
    });
    it('activates the staged release when someone installs', sfdisk, async () => {
      const r = await s.daemon.install();
      assert.equal(r.action, 'committed');
      assert.equal(r.reboot, 'required');
      assert.equal((await s.daemon.status()).system.primary, 'B');
      assert.equal(s.daemon.daemonStatus().staged, undefined);
    });
  });

  describe('when install is ask', () => {
    it('waits for approval, then commits and applies the reboot policy', sfdisk, async () => {
      const s = await setup('install = "ask"\nreboot = "now"');
      await firstCycle(s, state('awaiting-approval'));
      assert.equal(s.rebooted(), false);
      const r = await s.daemon.install();
      assert.equal(r.reboot, 'rebooting');
      assert.equal(s.rebooted(), true);
      assert.deepEqual(s.feed.calls.slice(-1), ['activate']);
    });
  });

  describe('when a cycle fails', () => {
    it('records the error, backs off, and resets after a success', sfdisk, async () => {
      const s = await setup('install = "auto"\nreboot = "never"');
      s.feed.checkError = new FerryError('TUF_DOWNLOAD_FAILED', 'repository unreachable');
      await firstCycle(s, id('daemon.check-scheduled'));
      assert.equal(s.daemon.daemonStatus().lastError?.code, 'TUF_DOWNLOAD_FAILED');
      assert.equal(s.daemon.daemonStatus().failures, 1);
      const second = next(s.daemon, id('daemon.check-scheduled'));
      s.clock.advance(90_000);
      await second;
      assert.equal(s.daemon.daemonStatus().failures, 2);
      s.feed.checkError = undefined;
      const third = next(s.daemon, id('daemon.check-scheduled'));
      s.clock.advance(150_000);
      await third;
      assert.equal(s.daemon.daemonStatus().failures, 0);
      const delays = s.events
        .filter((e) => e.id === 'daemon.check-scheduled')
        .map((e) => (e as { inSeconds?: number }).inSeconds);
      assert.deepEqual(delays, [30, 90, 150, 630]);
      assert.equal((await s.daemon.status()).system.primary, 'B');
    });
  });

  describe('when an operation is running', () => {
    it(
      'refuses a second one with DAEMON_BUSY and runs it once the first is done',
      sfdisk,
      async () => {
        const s = await setup('install = "auto"\nreboot = "never"');
        const gate = latch();
        s.feed.gate = gate.wait;
        const cycle = s.daemon.runCycle();
        await assert.rejects(s.daemon.install({ source: s.feed.feed!.bundle }), (e) =>
          isFerryError(e, 'DAEMON_BUSY'),
        );
        await assert.rejects(s.daemon.mark('good'), (e) => isFerryError(e, 'DAEMON_BUSY'));
        assert.equal(s.daemon.daemonStatus().operation?.kind, 'cycle');
        gate.open();
        assert.equal((await cycle).action, 'committed');
        s.feed.gate = undefined;
        const slot = await s.daemon.mark('good');
        assert.equal(slot.name, 'rootfs.0');
      },
    );
  });

  describe('when stopped during a download', () => {
    it('aborts it, refuses new work with DAEMON_STOPPING and says it stopped', sfdisk, async () => {
      const s = await setup('install = "auto"\nreboot = "never"');
      s.feed.gate = latch().wait;
      const cycle = s.daemon.runCycle();
      cycle.catch(() => undefined);
      await s.daemon.stop();
      await assert.rejects(cycle, (e) => isFerryError(e, 'DAEMON_STOPPING'));
      await assert.rejects(s.daemon.check(), (e) => isFerryError(e, 'DAEMON_STOPPING'));
      assert.equal(s.daemon.daemonStatus().state, 'stopped');
      assert.equal(s.events.at(-1)?.id, 'daemon.stopped');
      assert.equal((await s.daemon.status()).system.installCount, 0);
      await rm(join(s.dev.root, 'rebooted'), { force: true });
    });
  });
});
