import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import type { StatusReport } from '@ferry/agent';
import { needs } from '@ferry/testing';
import { ensureEfiArtefacts } from './artefacts.ts';
import { readAgentState, readEspGrubEnvVars } from './disk-state.ts';
import { startFileServer, type FileServer } from './file-server.ts';
import { Vm } from './qemu.ts';
import {
  BOOT_MS,
  guestJson,
  prepareRun,
  recordTiming,
  updateCommand,
  waitBoot,
  type Run,
} from './scenario.ts';

const VM_CAPS = [
  ...['root', 'loop', 'qemu', 'grub-bios', 'grub-efi', 'ovmf', 'busybox', 'mksquashfs'],
  ...['debugfs', 'mkfs.vfat', 'mtools'],
] as const;

/** The FAT clusters of `path` on the ESP (mshowfat): an in-place write keeps them. */
function espClusters(run: Run, disk: string, path: string): string {
  const at = `${disk}@@${run.artefacts.layout.boot?.offset}`;
  const r = spawnSync('mshowfat', ['-i', at, `::${path}`], {
    encoding: 'utf8',
    env: { ...process.env, MTOOLS_SKIP_CHECK: '1' },
  });
  if (r.status !== 0) throw new Error(`mshowfat failed: ${r.stderr}`);
  return r.stdout.trim().replace(/^.*?</, '<');
}

/** GRUB's slot choices on the console from line `from` on. */
function grubChoices(vm: Vm, from: number): string[] {
  return vm.lines
    .slice(from)
    .map((l) => /^FERRY-GRUB: slot=(\w+)/.exec(l.text)?.[1])
    .filter((s): s is string => s !== undefined);
}

// One qemu run under OVMF: GRUB-EFI reads the same grub.cfg and grubenv from the ESP (FAT). A
// commits v1; v2 goes into B and commits; the panicking v4 goes into A with one boot attempt
// (lowered in B's overlay), and GRUB falls back to B by itself.
describe('S7 UEFI with GRUB-EFI', needs(...VM_CAPS), () => {
  let run: Run;
  let vm: Vm;
  let srv: FileServer;
  let provisioned = '';
  before(async () => {
    run = await prepareRun('s7-uefi-grub', () => ensureEfiArtefacts('grub'));
    provisioned = espClusters(run, run.artefacts.disk, '/grub/grubenv');
    srv = await startFileServer({
      '/v2.fbd': { file: run.artefacts.bundles.v2 ?? '' },
      '/v4.fbd': { file: run.artefacts.bundles.v4 ?? '' },
    });
    vm = Vm.start({ ...run, firmware: 'ovmf' });
  });
  after(async () => {
    await vm?.powerCut();
    await srv?.close();
  });

  describe('when v1 and then v2 are installed', () => {
    it('OVMF starts GRUB-EFI, which boots A on trial, and the boot check commits v1', async () => {
      const boot = await waitBoot(vm, 0);
      assert.equal(boot.slot, 'A', vm.tail());
      assert.match(boot.grub, /ORDER=A B .*A_LEFT=2/, vm.tail());
      assert.deepEqual([boot.release, boot.bootCheckRc], ['1.0.0', 0], vm.tail());
      const mounts = await vm.run('grep " /boot " /proc/mounts', 30_000);
      assert.match(mounts.output.join('\n'), /^\/dev\/vda2 \/boot vfat rw/m, vm.tail());
      const status = (await guestJson(vm, 'ferry status --json')) as StatusReport;
      assert.equal(status.booted?.bootname, 'A');
      assert.equal(status.slots.find((s) => s.bootname === 'A')?.boot?.state, 'good');
    });

    it('the agent rewrote grubenv in place on FAT: same clusters, 1024 bytes, A committed', async () => {
      assert.equal((await vm.run('sync', 30_000)).rc, 0);
      assert.equal(espClusters(run, run.disk, '/grub/grubenv'), provisioned);
      const grub = readEspGrubEnvVars(run.disk, run.artefacts.layout);
      assert.equal(grub.ORDER, 'A B');
      assert.equal(grub.A_LEFT, undefined);
    });

    it('v2 from the update host goes into B, which boots on trial and commits', async () => {
      const install = await vm.run(updateCommand(srv.guestUrl('/v2.fbd')), 600_000);
      assert.equal(install.rc, 0, vm.tail());
      const from = vm.mark();
      vm.send('sync; reboot -f');
      const boot = await waitBoot(vm, from);
      assert.equal(boot.slot, 'B', vm.tail());
      // GRUB's own save_env read and rewrote the block the agent wrote on FAT.
      assert.match(boot.grub, /ORDER=B A .*B_LEFT=2/, vm.tail());
      assert.deepEqual([boot.release, boot.bootCheckRc], ['2.0.0', 0], vm.tail());
    });
  });

  describe('when the kernel of v4 panics', () => {
    it('GRUB-EFI boots A once, then falls back to B by itself', async () => {
      // One attempt instead of three: the lowered setting lives in B's overlay, not the image.
      const lower = "sed -i 's/^boot-attempts = 3$/boot-attempts = 1/' /etc/ferry/system.toml";
      assert.equal((await vm.run(lower, 30_000)).rc, 0, vm.tail());
      const install = await vm.run(updateCommand(srv.guestUrl('/v4.fbd')), 600_000);
      assert.equal(install.rc, 0, vm.tail());
      const from = vm.mark();
      vm.send('sync; reboot -f');
      await vm.waitFor(/^FERRY-GRUB: slot=A .*A_LEFT=0 /, BOOT_MS, from);
      const panic = await vm.waitFor(/Kernel panic/, BOOT_MS, from);
      assert.ok(panic, vm.tail());
      await vm.waitFor(/^FERRY-GRUB: slot=B /, BOOT_MS, from);
      const back = vm.lines.findIndex((l, i) => i >= from && /^FERRY-GRUB: slot=B /.test(l.text));
      const boot = await waitBoot(vm, back);
      assert.deepEqual([boot.slot, boot.release, boot.bootCheckRc], ['B', '2.0.0', 0], vm.tail());
      assert.deepEqual(grubChoices(vm, from), ['A', 'B']);
    });

    it('the agent on B records the fallback, and the ESP and data partition show it', async () => {
      const status = (await guestJson(vm, 'ferry status --json')) as StatusReport;
      assert.equal(status.booted?.bootname, 'B');
      assert.equal(status.lastRollback?.from, 'rootfs.0');
      assert.equal(status.lastRollback?.to, 'rootfs.1');
      await vm.shutdown();
      const grub = readEspGrubEnvVars(run.disk, run.artefacts.layout);
      // ORDER still names A first, but GRUB skips it: A is marked bad and out of attempts.
      assert.deepEqual(grub, { ORDER: 'A B', A_OK: '0', A_LEFT: '0', B_OK: '1' });
      assert.equal(espClusters(run, run.disk, '/grub/grubenv'), provisioned);
      const state = readAgentState(run.disk, run.artefacts.layout);
      assert.equal(state.pendingSlot, undefined);
      assert.equal(state.lastRollback?.from, 'rootfs.0');
      assert.equal(state.lastRollback?.to, 'rootfs.1');
      assert.match(state.lastRollback?.reason ?? '', /did not boot to a good state/);
      assert.equal(state.slots['rootfs.0']?.release?.version, '4.0.0');
      assert.equal(state.highWaterCounter, 2);
      console.log(`# timing ${recordTiming(run)}`);
    });
  });
});
