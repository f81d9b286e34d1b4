/**
 * The one conformance suite every bootloader backend runs (as every hono router runs
 * common.case.test.ts). A backend's test file calls `bootloaderConformance({...})` with a fixture
 * factory; the fixture's `boot()` plays the bootloader's side (the grub.cfg script, U-Boot's
 * boot script, systemd-boot's renames, barebox's bootchooser, the firmware's BootNext) on the
 * real on-disk state, so the suite checks both halves against each other.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Bootloader } from '@ferry/agent';
import { isFerryError } from '@ferry/core';

export interface BootloaderFixture {
  bootloader: Bootloader;
  /** One boot as the real bootloader would do it; the bootname booted, or undefined if none. */
  boot(): Promise<string | undefined>;
  /** A new Bootloader instance over the same storage. */
  reopen(): Promise<Bootloader>;
  cleanup(): Promise<void>;
}

export interface ConformanceOptions {
  name: string;
  /** A fresh fixture: bootnames A and B, both good, A primary, nothing counting. */
  make(): Promise<BootloaderFixture>;
  /** Attempts the backend can grant at most (EFI BootNext: 1); default unlimited. */
  maxAttempts?: number;
  /** getState reports attemptsLeft while a slot is on trial. */
  reportsAttempts?: boolean;
  skip?: string | false;
}

async function withFixture(
  o: ConformanceOptions,
  fn: (f: BootloaderFixture) => Promise<void>,
): Promise<void> {
  const f = await o.make();
  try {
    await fn(f);
  } finally {
    await f.cleanup();
  }
}

async function boots(f: BootloaderFixture, n: number): Promise<Array<string | undefined>> {
  const out: Array<string | undefined> = [];
  for (let i = 0; i < n; i++) out.push(await f.boot());
  return out;
}

/** Registers the suite for one backend. */
export function bootloaderConformance(o: ConformanceOptions): void {
  const opts = o.skip ? { skip: o.skip } : {};
  const tries = (n: number) => Math.min(n, o.maxAttempts ?? n);
  describe(`bootloader conformance: ${o.name}`, opts, () => {
    describe('when freshly provisioned', () => {
      it('boots the primary A, and both slots are good', () =>
        withFixture(o, async (f) => {
          assert.equal(await f.bootloader.getPrimary(), 'A');
          assert.equal((await f.bootloader.getState('A')).state, 'good');
          assert.equal((await f.bootloader.getState('B')).state, 'good');
          assert.deepEqual(await boots(f, 3), ['A', 'A', 'A']);
        }));
    });
    describe('when B is made primary with 3 attempts', () => {
      it('tries B as many times as granted, then falls back to A by itself', () =>
        withFixture(o, async (f) => {
          await f.bootloader.setPrimary('B', 3);
          assert.equal(await f.bootloader.getPrimary(), 'B');
          const st = await f.bootloader.getState('B');
          assert.equal(st.state, 'good');
          if (o.reportsAttempts) assert.equal(st.attemptsLeft, tries(3));
          const n = tries(3);
          assert.deepEqual(await boots(f, n + 2), [...Array<string>(n).fill('B'), 'A', 'A']);
          assert.equal((await f.bootloader.getState('B')).state, 'bad');
          assert.equal(await f.bootloader.getPrimary(), 'A');
        }));
      it('keeps booting B once it is marked good after its first boot', () =>
        withFixture(o, async (f) => {
          await f.bootloader.setPrimary('B', 3);
          assert.equal(await f.boot(), 'B');
          await f.bootloader.setState('B', 'good');
          assert.deepEqual(await boots(f, 5), ['B', 'B', 'B', 'B', 'B']);
          assert.equal((await f.bootloader.getState('B')).state, 'good');
          assert.equal((await f.bootloader.getState('A')).state, 'good', 'A stays a good fallback');
        }));
      it('persists across a new instance over the same storage', () =>
        withFixture(o, async (f) => {
          await f.bootloader.setPrimary('B', 2);
          const again = await f.reopen();
          assert.equal(await again.getPrimary(), 'B');
          assert.equal((await again.getState('B')).state, 'good');
        }));
    });
    describe('when a slot is marked bad', () => {
      it('never boots it and moves primary to the other good slot', () =>
        withFixture(o, async (f) => {
          await f.bootloader.setPrimary('B', 3);
          await f.bootloader.setState('B', 'bad');
          assert.equal((await f.bootloader.getState('B')).state, 'bad');
          assert.equal(await f.bootloader.getPrimary(), 'A');
          assert.deepEqual(await boots(f, 3), ['A', 'A', 'A']);
        }));
      it('boots it again once it is made primary again', () =>
        withFixture(o, async (f) => {
          await f.bootloader.setState('B', 'bad');
          await f.bootloader.setPrimary('B', 1);
          assert.equal(await f.boot(), 'B');
        }));
      it('marking the booted, committed slot bad leaves the other as primary', () =>
        withFixture(o, async (f) => {
          await f.bootloader.setState('A', 'bad');
          assert.equal(await f.bootloader.getPrimary(), 'B');
          assert.equal(await f.boot(), 'B');
        }));
    });
    describe('when asked about an unknown slot', () => {
      it('refuses with BOOTLOADER_SLOT_UNKNOWN', () =>
        withFixture(o, async (f) => {
          await assert.rejects(f.bootloader.getState('Z'), (e) =>
            isFerryError(e, 'BOOTLOADER_SLOT_UNKNOWN'),
          );
          await assert.rejects(f.bootloader.setPrimary('Z', 3), (e) =>
            isFerryError(e, 'BOOTLOADER_SLOT_UNKNOWN'),
          );
          await assert.rejects(f.bootloader.setState('Z', 'good'), (e) =>
            isFerryError(e, 'BOOTLOADER_SLOT_UNKNOWN'),
          );
        }));
    });
    describe('when boots bypass the bootloader (kexec), where the backend supports it', () => {
      it('counts them as the bootloader would: B as many times as granted, then A', () =>
        withFixture(o, async (f) => {
          const bl = f.bootloader;
          assert.equal(!!bl.nextBoot, !!bl.countBootAttempt, 'both kexec verbs, or neither');
          if (!bl.nextBoot || !bl.countBootAttempt) return;
          await bl.setPrimary('B', tries(3));
          const seq: Array<string | undefined> = [];
          // Kexec boots and bootloader boots alternate; together they spend the same attempts.
          for (let i = 0; i <= tries(3); i++) {
            if (i % 2 === 1) {
              seq.push(await f.boot());
              continue;
            }
            const next = await bl.nextBoot();
            if (next.bootname !== undefined) await bl.countBootAttempt(next.bootname);
            seq.push(next.bootname);
          }
          assert.deepEqual(seq, [...Array<string>(tries(3)).fill('B'), 'A']);
        }));
      it('gives a counted attempt back', () =>
        withFixture(o, async (f) => {
          const bl = f.bootloader;
          if (!bl.nextBoot || !bl.countBootAttempt) return;
          await bl.setPrimary('B', tries(3));
          const giveBack = await bl.countBootAttempt('B');
          await giveBack();
          assert.deepEqual(await boots(f, tries(3) + 1), [
            ...Array<string>(tries(3)).fill('B'),
            'A',
          ]);
        }));
    });
  });
}
