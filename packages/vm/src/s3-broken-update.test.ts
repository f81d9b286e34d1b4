import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { StatusReport } from '@ferry/agent';
import { needs } from '@ferry/testing';
import { guestCheckin, startVmFleet, type VmFleet } from './fleet-host.ts';
import { Vm } from './qemu.ts';
import {
  BOOT_MS,
  deviceState,
  guestJson,
  prepareRun,
  recordTiming,
  waitBoot,
  type Run,
} from './scenario.ts';

const VM_CAPS = ['root', 'loop', 'qemu', 'grub-bios', 'busybox', 'mksquashfs', 'debugfs'] as const;

/** GRUB's slot choices on the console from line `from` on. */
function grubChoices(vm: Vm, from: number): string[] {
  return vm.lines
    .slice(from)
    .map((l) => /^FERRY-GRUB: slot=(\w+)/.exec(l.text)?.[1])
    .filter((s): s is string => s !== undefined);
}

// One VM run through the fleet server: a rollout of v3 (a failing health check) is installed and
// rolled back, then one of v4 (a kernel that panics before userspace), and GRUB falls back by
// itself. Each time the next check-in reports the rollback and the rollout pauses itself.
describe('S3 broken updates roll back', needs(...VM_CAPS), () => {
  let run: Run;
  let vm: Vm;
  let fleet: VmFleet;
  const rollouts: Record<string, string> = {};
  before(async () => {
    run = await prepareRun('s3-broken-update');
    fleet = await startVmFleet(run, ['v1', 'v3', 'v4']);
    vm = Vm.start(run);
  });
  after(async () => {
    await vm?.powerCut();
    await fleet?.close();
  });

  const checkin = () => guestCheckin(vm);

  /** Rolls `version` out, lets the guest install it, and reboots; returns the console mark. */
  async function installAndReboot(version: string): Promise<number> {
    rollouts[version] = await fleet.rollout(version);
    const r = await checkin();
    assert.equal((r.installed as { version?: string } | undefined)?.version, version, vm.tail());
    const from = vm.mark();
    vm.send('sync; reboot -f');
    return from;
  }

  /** The next check-in reports the rollback, and the rollout of `version` pauses itself. */
  async function reportsRollback(version: string): Promise<void> {
    const r = await checkin();
    const settled = r.settled as { version: string; state: string } | undefined;
    assert.deepEqual([settled?.version, settled?.state], [version, 'rolled-back'], vm.tail());
    await fleet.server.evaluate();
    const view = await fleet.view(rollouts[version]!);
    assert.equal(view.counts['rolled-back'], 1);
    assert.equal(view.state, 'paused');
  }

  describe('when v3 fails its health check', () => {
    it('A boots v1 and commits it', async () => {
      const boot = await waitBoot(vm, 0);
      assert.deepEqual([boot.slot, boot.release, boot.bootCheckRc], ['A', '1.0.0', 0], vm.tail());
      assert.equal((await vm.run(fleet.provisionCommand, 60_000)).rc, 0, vm.tail());
      assert.equal((await checkin()).enrolment, 'accepted');
    });

    it('B boots v3 once, the boot check marks it bad and A boots again', async () => {
      const from = await installAndReboot('3.0.0');
      await vm.waitFor(/^FERRY-GRUB: slot=B /, BOOT_MS, from);
      const v3 = vm.mark();
      await vm.waitFor(/^FERRY-INIT: up release=3\.0\.0/, BOOT_MS, from);
      await vm.waitFor(/^FERRY-GRUB: slot=A /, BOOT_MS, v3);
      const back = vm.lines.findIndex((l, i) => i >= v3 && /^FERRY-GRUB: slot=A /.test(l.text));
      const boot = await waitBoot(vm, back);
      assert.deepEqual([boot.slot, boot.release, boot.bootCheckRc], ['A', '1.0.0', 0], vm.tail());
      assert.deepEqual(grubChoices(vm, from), ['B', 'A']);
      // v3's boot check rebooted before it could report: its health check failed.
      const v3Lines = vm.lines.slice(v3, back).map((l) => l.text);
      assert.ok(!v3Lines.some((t) => t.startsWith('FERRY-BOOT-CHECK:')), vm.tail());
      // ...but printed why before rebooting.
      assert.ok(
        v3Lines.some((t) => /^rootfs\.1: bad$/.test(t)),
        vm.tail(),
      );
    });

    it('the agent reports the rollback and B as bad', async () => {
      const status = (await guestJson(vm, 'ferry status --json')) as StatusReport;
      assert.equal(status.lastRollback?.from, 'rootfs.1');
      assert.equal(status.lastRollback?.to, 'rootfs.0');
      assert.match(status.lastRollback?.reason ?? '', /health/i);
      assert.equal(status.slots.find((s) => s.bootname === 'B')?.boot?.state, 'bad');
      assert.equal(
        status.highWaterCounter,
        1,
        'a release that never committed does not raise the floor',
      );
    });

    it('the next check-in reports it rolled back, and the rollout pauses itself', () =>
      reportsRollback('3.0.0'));
  });

  describe('when v4 has a kernel that panics', () => {
    it('GRUB tries B three times, then falls back to A by itself', async () => {
      const from = await installAndReboot('4.0.0');
      for (const left of [2, 1, 0])
        await vm.waitFor(new RegExp(`^FERRY-GRUB: slot=B .*B_LEFT=${left}$`), BOOT_MS, from);
      await vm.waitFor(/^FERRY-GRUB: slot=A /, BOOT_MS, from);
      const back = vm.lines.findIndex((l, i) => i >= from && /^FERRY-GRUB: slot=A /.test(l.text));
      const boot = await waitBoot(vm, back);
      assert.deepEqual([boot.slot, boot.release, boot.bootCheckRc], ['A', '1.0.0', 0], vm.tail());
      assert.deepEqual(grubChoices(vm, from), ['B', 'B', 'B', 'A']);
      assert.ok(
        vm.lines.slice(from).some((l) => /Kernel panic/.test(l.text)),
        vm.tail(),
      );
    });

    it('the next check-in reports it rolled back, and that rollout pauses too', () =>
      reportsRollback('4.0.0'));

    it('the disk shows B bad, A committed and the fallback recorded', async () => {
      const status = (await guestJson(vm, 'ferry status --json')) as StatusReport;
      assert.equal(status.booted?.bootname, 'A');
      await vm.shutdown();
      const { grub, state } = deviceState(run);
      assert.equal(grub.B_OK, '0');
      assert.equal(grub.B_LEFT, '0');
      assert.equal(grub.A_LEFT, undefined);
      assert.equal(state.pendingSlot, undefined);
      assert.equal(state.lastRollback?.from, 'rootfs.1');
      assert.equal(state.lastRollback?.to, 'rootfs.0');
      assert.match(state.lastRollback?.reason ?? '', /did not boot to a good state/);
      assert.equal(state.slots['rootfs.1']?.release?.version, '4.0.0');
      assert.equal(state.highWaterCounter, 1);
      console.log(`# timing ${recordTiming(run)}`);
    });
  });
});
