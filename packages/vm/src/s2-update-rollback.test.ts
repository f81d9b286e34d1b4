import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { StatusReport } from '@ferry/agent';
import { needs } from '@ferry/testing';
import { guestCheckin, startVmFleet, type VmFleet } from './fleet-host.ts';
import { Vm } from './qemu.ts';
import {
  deviceState,
  guestJson,
  prepareRun,
  recordTiming,
  waitBoot,
  type Run,
} from './scenario.ts';

const VM_CAPS = ['root', 'loop', 'qemu', 'grub-bios', 'busybox', 'mksquashfs', 'debugfs'] as const;

// One VM run: the provisioned disk boots for the first time and A commits v1 (S1); the guest
// reaches the fleet server on the host (10.0.2.2) and its rollout assigns v2, which the agent installs from
// the repository into B; B boots and commits, and the server hears it (S2); then a manual
// rollback brings A back (S5). Each step needs the one before it.
describe('S1 fresh boot, S2 update v1 -> v2, then S5 manual rollback', needs(...VM_CAPS), () => {
  let run: Run;
  let vm: Vm;
  let fleet: VmFleet;
  let rolloutId = '';
  let installSeconds = 0;
  before(async () => {
    run = await prepareRun('s2-update-rollback');
    fleet = await startVmFleet(run, ['v1', 'v2']);
    vm = Vm.start(run);
  });
  after(async () => {
    await vm?.powerCut();
    await fleet?.close();
  });

  const checkin = () => guestCheckin(vm);

  describe('when v2 is installed from the update host', () => {
    it('S1: GRUB boots slot A on trial and the boot check commits v1', async () => {
      const boot = await waitBoot(vm, 0);
      assert.deepEqual([boot.slot, boot.release, boot.bootCheckRc], ['A', '1.0.0', 0], vm.tail());
      assert.match(boot.grub, /ORDER=A B .*A_LEFT=2/, vm.tail());
      const status = (await guestJson(vm, 'ferry status --json')) as StatusReport;
      assert.equal(status.booted?.bootname, 'A');
      assert.equal(status.pendingSlot, undefined);
      assert.equal(status.slots.find((s) => s.bootname === 'A')?.boot?.state, 'good');
    });

    it('S1: the disk shows v1 committed in A', async () => {
      assert.equal((await vm.run('sync', 60_000)).rc, 0);
      const { grub, state } = deviceState(run);
      assert.equal(grub.ORDER, 'A B');
      assert.equal(grub.A_OK, '1');
      assert.equal(grub.A_LEFT, undefined);
      assert.equal(state.pendingSlot, undefined);
      assert.equal(state.highWaterCounter, 1);
      assert.equal(state.slots['rootfs.0']?.release?.version, '1.0.0');
    });

    it('the agent enrols with the fleet server and is assigned nothing yet', async () => {
      assert.equal((await vm.run(fleet.provisionCommand, 60_000)).rc, 0, vm.tail());
      const r = await checkin();
      assert.equal(r.enrolment, 'accepted');
      assert.equal(r.assignment, undefined);
    });

    it('a rollout assigns v2: the agent verifies it and installs it into B, fetching only the chunks A lacks', async () => {
      rolloutId = await fleet.rollout('2.0.0');
      const t0 = Date.now();
      const r = await checkin();
      installSeconds = (Date.now() - t0) / 1000;
      const installed = r.installed as { version: string; target: string; fetchedBytes: number };
      assert.equal(installed.version, '2.0.0');
      assert.equal(installed.target, 'rootfs.1');
      const size = statSync(run.artefacts.bundles.v2 ?? '').size;
      assert.ok(installed.fetchedBytes < size / 2, `fetched ${installed.fetchedBytes} of ${size}`);
      assert.equal((await fleet.view(rolloutId)).counts.rebooting, 1);
    });

    it('after a reboot B boots v2 on trial and the boot check commits it', async () => {
      const from = vm.mark();
      vm.send('sync; reboot -f');
      const boot = await waitBoot(vm, from);
      assert.equal(boot.slot, 'B', vm.tail());
      assert.match(boot.grub, /ORDER=B A .*B_LEFT=2/, vm.tail());
      assert.deepEqual([boot.release, boot.bootCheckRc], ['2.0.0', 0], vm.tail());
      const status = (await guestJson(vm, 'ferry status --json')) as StatusReport;
      assert.equal(status.booted?.bootname, 'B');
      assert.equal(status.pendingSlot, undefined);
      assert.equal(status.highWaterCounter, 2);
    });

    it('the next check-in reports committed, and the rollout completes', async () => {
      const r = await checkin();
      assert.deepEqual(r.settled, { rolloutId, version: '2.0.0', state: 'committed' });
      await fleet.server.evaluate();
      const view = await fleet.view(rolloutId);
      assert.equal(view.counts.committed, 1);
      assert.equal(view.state, 'completed');
    });

    it('the disk shows v2 committed in B', async () => {
      assert.equal((await vm.run('sync', 60_000)).rc, 0);
      const { grub, state } = deviceState(run);
      assert.equal(grub.ORDER, 'B A');
      assert.equal(grub.B_OK, '1');
      assert.equal(grub.B_LEFT, undefined);
      assert.equal(state.slots['rootfs.1']?.release?.version, '2.0.0');
      assert.equal(state.slots['rootfs.1']?.status, 'installed');
      assert.equal(state.lastInstall?.result, 'ok');
      assert.equal(state.pendingSlot, undefined);
    });
  });

  describe('when the committed update is rolled back by hand (S5)', () => {
    it('`ferry rollback --reboot` boots A with v1 again', async () => {
      const from = vm.mark();
      vm.send('ferry rollback --reboot');
      const boot = await waitBoot(vm, from);
      assert.deepEqual([boot.slot, boot.release, boot.bootCheckRc], ['A', '1.0.0', 0], vm.tail());
    });

    it('the disk shows A primary and the rollback recorded', async () => {
      await vm.shutdown();
      const { grub, state } = deviceState(run);
      assert.equal(grub.ORDER, 'A B');
      assert.equal(grub.A_LEFT, undefined);
      assert.equal(state.lastRollback?.from, 'rootfs.1');
      assert.equal(state.lastRollback?.to, 'rootfs.0');
      assert.equal(state.highWaterCounter, 2, 'the floor never goes down');
      console.log(`# timing ${recordTiming(run, `install ${installSeconds.toFixed(1)} s`)}`);
    });
  });
});
