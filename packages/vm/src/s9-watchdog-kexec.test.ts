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

// One VM run with an i6300esb watchdog. S9a: v5, whose /sbin/init hangs before it takes over
// the watchdog, is installed into B with 1 boot attempt; its boot is reset by the watchdog, GRUB
// finds B's attempts spent and boots A by itself, and A's boot check records the rollback.
// S9b: v2 is installed into B and started with `ferry reboot --kexec`, no firmware, no GRUB.
describe('S9 watchdog and kexec', needs(...VM_CAPS), () => {
  let run: Run;
  let vm: Vm;
  let srv: FileServer;
  const timings: string[] = [];
  before(async () => {
    run = await prepareRun('s9-watchdog-kexec');
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
        linesMatching(vm, 0, /^FERRY-INITRAMFS: watchdog armed 30 s bootstatus=0$/).length,
        1,
        vm.tail(),
      );
      assert.equal(linesMatching(vm, 0, /^FERRY-INIT: watchdog taken over$/).length, 1, vm.tail());
    });

    it('B hangs, the watchdog resets it, and GRUB falls back to A by itself', async () => {
      // One attempt instead of three: the fewest boots that show the claim (B_LEFT 1 -> 0, reset, A).
      const lower = "sed -i 's/^boot-attempts = 3$/boot-attempts = 1/' /etc/ferry/system.toml";
      assert.equal((await vm.run(lower, 30_000)).rc, 0, vm.tail());
      const install = await vm.run(updateCommand(srv.guestUrl('/v5.fbd')), 600_000);
      assert.equal(install.rc, 0, vm.tail());
      const from = vm.mark();
      const t0 = vm.elapsed();
      vm.send('sync; reboot -f');
      for (const left of [0]) {
        const grub = vm.mark();
        await vm.waitFor(new RegExp(`^FERRY-GRUB: slot=B .*B_LEFT=${left}$`), BOOT_MS, from);
        await vm.waitFor(/^FERRY-HANG: release=5\.0\.0 .*ferry\.slot=B/, BOOT_MS, grub);
      }
      await vm.waitFor(/^FERRY-GRUB: slot=A /, BOOT_MS, from);
      const back = linesMatching(vm, from, /^FERRY-GRUB: slot=A /)[0]!.i;
      const boot = await waitBoot(vm, back);
      assert.deepEqual([boot.slot, boot.release, boot.bootCheckRc], ['A', '1.0.0', 0], vm.tail());
      timings.push(`the hung boot of B and A's boot: ${(vm.elapsed() - t0).toFixed(0)} s`);

      const grubs = linesMatching(vm, from, /^FERRY-GRUB: slot=/).map((l) => l.text.slice(17, 18));
      assert.deepEqual(grubs, ['B', 'A']);
      // The reboot into B was asked for (bootstatus 0); the next reset was the watchdog's.
      const armed = linesMatching(vm, from, /^FERRY-INITRAMFS: watchdog armed/).map((l) => l.text);
      assert.deepEqual(
        armed.map((t) => t.replace(/.*bootstatus=/, '')),
        ['0', '32'],
        vm.tail(),
      );
      const hung = linesMatching(vm, from, /^FERRY-HANG: /);
      assert.equal(hung.length, 1);
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
    });
  });

  // S9b, same run: v2 is installed into B and started with kexec, without firmware and GRUB.
  describe('when an installed update is applied with kexec', () => {
    const cmdline =
      'root=PARTLABEL=rootfs-b ro ferry.slot=B console=ttyS0,115200 panic=5 loglevel=3';
    let kexecLine = 0;

    it("the agent counts B's attempt, loads B's kernel from its image and jumps", async () => {
      const restore = "sed -i 's/^boot-attempts = 1$/boot-attempts = 3/' /etc/ferry/system.toml";
      assert.equal((await vm.run(restore, 30_000)).rc, 0, vm.tail());
      const install = await vm.run(updateCommand(srv.guestUrl('/v2.fbd')), 600_000);
      assert.equal(install.rc, 0, vm.tail());
      const from = vm.mark();
      vm.send('ferry reboot --kexec --json');
      const started = await vm.waitFor(/^\{"id":"reboot\.started".*\}$/, 300_000, from);
      kexecLine = linesMatching(vm, from, /^\{"id":"reboot\.started"/)[0]!.i;
      timings.push(
        `ferry reboot --kexec to its reboot.started event: ${(vm.lines[kexecLine]!.t - vm.lines[from]!.t).toFixed(0)} s`,
      );
      const e = JSON.parse(started[0]) as Record<string, unknown>;
      assert.deepEqual(
        [e.method, e.slot, e.bootname, e.attemptsLeft, e.kernel, e.initrd, e.cmdline],
        ['kexec', 'rootfs.1', 'B', 2, '/boot/vmlinuz', '/boot/initrd.img', cmdline],
      );
    });

    it('B boots v2 without firmware and GRUB, and its boot check commits it', async () => {
      const init = await vm.waitFor(
        /^FERRY-INIT: up release=(\S+) cmdline=(.*)$/,
        BOOT_MS,
        kexecLine,
      );
      const rc = await vm.waitFor(/^FERRY-BOOT-CHECK: rc=(\d+)/, BOOT_MS, kexecLine);
      await vm.waitFor(/^FERRY-SHELL: ready/, BOOT_MS, kexecLine);
      const initAt = linesMatching(vm, kexecLine, /^FERRY-INIT: up/)[0]!.i;
      timings.push(
        `kexec to B's init: ${(vm.lines[initAt]!.t - vm.lines[kexecLine]!.t).toFixed(0)} s`,
      );
      assert.equal(init[1], '2.0.0');
      // GRUB's `linux` puts BOOT_IMAGE= first; the kexec'd command line is the agent's alone.
      assert.equal(init[2], cmdline);
      assert.equal(rc[1], '0', vm.tail());
      const after = vm.lines.slice(kexecLine).map((l) => l.text);
      assert.ok(!after.some((t) => t.startsWith('FERRY-GRUB:')), 'no GRUB line after the kexec');
      // The watchdog ran on through the jump (nowayout) and did not fire.
      assert.deepEqual(
        linesMatching(vm, kexecLine, /^FERRY-INITRAMFS: watchdog armed/).map((l) => l.text),
        ['FERRY-INITRAMFS: watchdog armed 30 s bootstatus=0'],
      );
      const status = (await guestJson(vm, 'ferry status --json')) as StatusReport;
      assert.deepEqual(
        [status.booted?.bootname, status.primary, status.pendingSlot],
        ['B', 'B', undefined],
      );
      const b = status.slots.find((s) => s.bootname === 'B');
      assert.deepEqual(
        [b?.boot?.state, b?.boot?.attemptsLeft, b?.record?.release?.version],
        ['good', undefined, '2.0.0'],
      );
      assert.equal(status.highWaterCounter, 2);
    });

    it('the disk shows B primary and committed, no attempt counting left', async () => {
      await vm.shutdown();
      const { grub, state } = deviceState(run);
      assert.deepEqual(
        [grub.ORDER, grub.B_OK, grub.B_LEFT, grub.A_OK, grub.A_LEFT],
        ['B A', '1', undefined, '1', undefined],
      );
      assert.equal(state.pendingSlot, undefined);
      assert.equal(state.slots['rootfs.1']?.release?.version, '2.0.0');
      assert.ok(state.slots['rootfs.1']?.bootedAt, "B's boot check recorded its boot");
      assert.equal(state.highWaterCounter, 2);
      console.log(`# ${timings.join('\n# ')}`);
      console.log(`# timing ${recordTiming(run, 'watchdog and kexec')}`);
    });
  });
});
