import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { StatusReport } from '@ferry/agent';
import { needs } from '@ferry/testing';
import { startFileServer, type FileServer } from './file-server.ts';
import { Vm } from './qemu.ts';
import {
  BOOT_MS,
  deviceState,
  guestJson,
  prepareRun,
  recordTiming,
  updateCommand,
  waitBoot,
  type Run,
} from './scenario.ts';

const VM_CAPS = ['root', 'loop', 'qemu', 'grub-bios', 'busybox', 'mksquashfs', 'debugfs'] as const;

/** Console lines from `from` on whose text matches `re`, with their index. */
function linesMatching(vm: Vm, from: number, re: RegExp): Array<{ i: number; text: string }> {
  return vm.lines
    .map((l, i) => ({ i, text: l.text }))
    .filter((l) => l.i >= from && re.test(l.text));
}

// One VM run with an i6300esb watchdog. S7a: v5, whose /sbin/init hangs before it takes over
// the watchdog, is installed into B with 2 boot attempts; each of its boots is reset by the
// watchdog, GRUB counts B down and boots A by itself, and A's boot check records the rollback.
describe('S7 watchdog and kexec', needs(...VM_CAPS), () => {
  let run: Run;
  let vm: Vm;
  let srv: FileServer;
  const timings: string[] = [];
  before(async () => {
    run = await prepareRun('s7-watchdog-kexec');
    srv = await startFileServer({
      '/v5.fbd': { file: run.artefacts.bundles.v5 ?? '' },
      '/v2.fbd': { file: run.artefacts.bundles.v2 ?? '' },
    });
    vm = Vm.start({ ...run, watchdog: true });
  });
  after(async () => {
    await vm?.powerCut();
    await srv?.close();
  });

  describe('when an update hangs before it takes over the watchdog', () => {
    it('A boots v1 with the watchdog armed and taken over, and commits it', async () => {
      const boot = await waitBoot(vm, 0);
      assert.deepEqual([boot.slot, boot.release, boot.bootCheckRc], ['A', '1.0.0', 0], vm.tail());
      assert.equal(
        linesMatching(vm, 0, /^FERRY-INITRAMFS: watchdog armed 60 s bootstatus=0$/).length,
        1,
        vm.tail(),
      );
      assert.equal(linesMatching(vm, 0, /^FERRY-INIT: watchdog taken over$/).length, 1, vm.tail());
    });

    it('B hangs twice, each time the watchdog resets it, and GRUB falls back to A', async () => {
      // Two attempts instead of three: the fewest that show GRUB counting across watchdog resets.
      const lower = "sed -i 's/^boot-attempts = 3$/boot-attempts = 2/' /etc/ferry/system.toml";
      assert.equal((await vm.run(lower, 30_000)).rc, 0, vm.tail());
      const install = await vm.run(updateCommand(srv.guestUrl('/v5.fbd')), 600_000);
      assert.equal(install.rc, 0, vm.tail());
      const from = vm.mark();
      const t0 = vm.elapsed();
      vm.send('sync; reboot -f');
      for (const left of [1, 0]) {
        const grub = vm.mark();
        await vm.waitFor(new RegExp(`^FERRY-GRUB: slot=B .*B_LEFT=${left}$`), BOOT_MS, from);
        await vm.waitFor(/^FERRY-HANG: release=5\.0\.0 .*ferry\.slot=B/, BOOT_MS, grub);
      }
      await vm.waitFor(/^FERRY-GRUB: slot=A /, BOOT_MS, from);
      const back = linesMatching(vm, from, /^FERRY-GRUB: slot=A /)[0]!.i;
      const boot = await waitBoot(vm, back);
      assert.deepEqual([boot.slot, boot.release, boot.bootCheckRc], ['A', '1.0.0', 0], vm.tail());
      timings.push(`2 hung boots of B and A's boot: ${(vm.elapsed() - t0).toFixed(0)} s`);

      const grubs = linesMatching(vm, from, /^FERRY-GRUB: slot=/).map((l) => l.text.slice(17, 18));
      assert.deepEqual(grubs, ['B', 'B', 'A']);
      // The reboot into B was asked for (bootstatus 0); the next two resets were the watchdog's.
      const armed = linesMatching(vm, from, /^FERRY-INITRAMFS: watchdog armed/).map((l) => l.text);
      assert.deepEqual(
        armed.map((t) => t.replace(/.*bootstatus=/, '')),
        ['0', '32', '32'],
        vm.tail(),
      );
      const hung = linesMatching(vm, from, /^FERRY-HANG: /);
      assert.equal(hung.length, 2);
      for (const h of hung) {
        const next = linesMatching(vm, h.i, /^FERRY-GRUB: /)[0]!;
        const gap = vm.lines[next.i]!.t - vm.lines[h.i]!.t;
        timings.push(`hang to reset: ${gap.toFixed(0)} s`);
        // Nothing but the watchdog ended the hung boot: no panic, no init, no boot check.
        const between = vm.lines.slice(h.i + 1, next.i).map((l) => l.text);
        assert.ok(
          !between.some((t) => /Kernel panic|FERRY-INIT|FERRY-BOOT-CHECK|reboot/i.test(t)),
          between.join('\n'),
        );
      }
    });

    it("A's boot check records the rollback, on the console and on the disk", async () => {
      const status = (await guestJson(vm, 'ferry status --json')) as StatusReport;
      assert.equal(status.booted?.bootname, 'A');
      assert.equal(status.lastRollback?.from, 'rootfs.1');
      assert.equal(status.lastRollback?.to, 'rootfs.0');
      assert.match(status.lastRollback?.reason ?? '', /did not boot to a good state/);
      assert.equal(status.slots.find((s) => s.bootname === 'B')?.boot?.state, 'bad');
      assert.equal((await vm.run('sync', 60_000)).rc, 0);
      const { grub, state } = deviceState(run);
      assert.deepEqual(
        [grub.B_OK, grub.B_LEFT, grub.A_OK, grub.A_LEFT],
        ['0', '0', '1', undefined],
      );
      assert.equal(state.pendingSlot, undefined);
      assert.equal(state.lastRollback?.from, 'rootfs.1');
      assert.match(state.lastRollback?.reason ?? '', /did not boot to a good state/);
      assert.equal(state.slots['rootfs.1']?.release?.version, '5.0.0');
      assert.equal(
        state.highWaterCounter,
        1,
        'a release that never committed does not raise the floor',
      );
      console.log(`# ${timings.join('\n# ')}`);
      console.log(`# timing ${recordTiming(run, 'watchdog')}`);
    });
  });
});
