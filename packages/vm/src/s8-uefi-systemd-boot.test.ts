import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { StatusReport } from '@ferry/agent';
import { needs } from '@ferry/testing';
import { ensureEfiArtefacts } from './artefacts.ts';
import { listEspDir, readAgentState, readEspFile } from './disk-state.ts';
import { startFileServer, type FileServer } from './file-server.ts';
import { Vm } from './qemu.ts';
import {
  BOOT_MS,
  guestJson,
  prepareRun,
  recordTiming,
  updateCommand,
  type Run,
} from './scenario.ts';

const VM_CAPS = [
  ...['root', 'loop', 'qemu', 'grub-bios', 'systemd-boot-efi', 'ovmf', 'busybox', 'mksquashfs'],
  ...['debugfs', 'mkfs.vfat', 'mtools'],
] as const;
const SELECTED =
  '/sys/firmware/efi/efivars/LoaderEntrySelected-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f';

/** What one boot through systemd-boot showed: the slot from the kernel command line, the entries. */
interface SdBoot {
  slot: string;
  release: string;
  entries: string[];
  bootCheckRc: number;
}

/** The next complete boot from line `from`: root init, the entry names it saw, boot check, shell. */
async function waitSdBoot(vm: Vm, from = vm.mark()): Promise<SdBoot> {
  const init = await vm.waitFor(/^FERRY-INIT: up release=(\S+) .*ferry\.slot=(\w+)/, BOOT_MS, from);
  const entries = await vm.waitFor(/^FERRY-INIT: entries (.*)$/, BOOT_MS, from);
  const rc = await vm.waitFor(/^FERRY-BOOT-CHECK: rc=(\d+)/, BOOT_MS, from);
  await vm.waitFor(/^FERRY-SHELL: ready/, BOOT_MS, from);
  return {
    slot: init[2] ?? '',
    release: init[1] ?? '',
    entries: (entries[1] ?? '').trim().split(/\s+/).sort(),
    bootCheckRc: Number(rc[1]),
  };
}

/** `<prefix>-<first 32 hex of SHA-256>`: the name Ferry gives a kernel file on the ESP. */
function espName(prefix: string, file: string): string {
  return `${prefix}-${createHash('sha256').update(readFileSync(file)).digest('hex').slice(0, 32)}`;
}

// One qemu run under OVMF with systemd-boot: the kernels live in the slots, Ferry's installer
// copies each new slot's kernel and initramfs onto the ESP and writes its Boot Loader Spec entry;
// systemd-boot counts the tries in the entry's name and falls back by itself.
describe('S8 UEFI with systemd-boot', needs(...VM_CAPS), () => {
  let run: Run;
  let vm: Vm;
  let srv: FileServer;
  const files = { kernel: '', good: '', panic: '' };
  const entries = () => listEspDir(run.disk, run.artefacts.layout, '/loader/entries');
  const kernels = () => listEspDir(run.disk, run.artefacts.layout, '/ferry');
  before(async () => {
    run = await prepareRun('s8-uefi-systemd-boot', () => ensureEfiArtefacts('systemd-boot'));
    const c = run.artefacts.cache;
    files.kernel = espName('vmlinuz', join(c, 'kernel', 'vmlinuz'));
    files.good = espName('initrd', join(c, 'initrd-good', 'initrd.img'));
    files.panic = espName('initrd', join(c, 'initrd-panic', 'initrd.img'));
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
    it("the provisioned ESP holds slot A's kernel, initramfs and entry ferry-A+3", () => {
      assert.deepEqual(entries(), ['ferry-A+3.conf']);
      assert.deepEqual(kernels(), [files.good, files.kernel].sort());
      const text = readEspFile(run.disk, run.artefacts.layout, '/loader/entries/ferry-A+3.conf');
      assert.match(text?.toString() ?? '', new RegExp(`^linux /ferry/${files.kernel}$`, 'm'));
      assert.match(text?.toString() ?? '', /^options root=PARTLABEL=rootfs-a .*ferry\.slot=A /m);
    });

    it('systemd-boot boots A, counting ferry-A+3 down to +2-1, and the boot check blesses it', async () => {
      const boot = await waitSdBoot(vm, 0);
      assert.deepEqual(
        boot,
        { slot: 'A', release: '1.0.0', entries: ['ferry-A+2-1.conf'], bootCheckRc: 0 },
        vm.tail(),
      );
      const sel = await vm.run(`tail -c +5 ${SELECTED} | tr -d '\\000'; echo`, 30_000);
      assert.match(sel.output.join('\n'), /^ferry-a/im, vm.tail());
      // ...and the agent reads it from efivarfs.
      const st = (await guestJson(vm, 'ferry status --json')) as StatusReport;
      assert.equal(st.bootloaderBooted, 'A', vm.tail());
      const mounts = await vm.run('grep " /boot " /proc/mounts', 30_000);
      assert.match(mounts.output.join('\n'), /^\/dev\/vda2 \/boot vfat rw/m, vm.tail());
      assert.equal((await vm.run('sync', 30_000)).rc, 0);
      assert.deepEqual(entries(), ['ferry-A.conf']);
    });

    it("the agent puts v2's kernel and entry ferry-B+3 on the ESP; B boots counted and is blessed", async () => {
      const install = await vm.run(updateCommand(srv.guestUrl('/v2.fbd')), 600_000);
      assert.equal(install.rc, 0, vm.tail());
      assert.equal((await vm.run('sync', 30_000)).rc, 0);
      assert.deepEqual(entries(), ['ferry-A.conf', 'ferry-B+3.conf']);
      // v2 has v1's kernel and initramfs: one file each serves both entries.
      assert.deepEqual(kernels(), [files.good, files.kernel].sort());
      const from = vm.mark();
      vm.send('sync; reboot -f');
      const boot = await waitSdBoot(vm, from);
      assert.deepEqual(
        boot,
        {
          slot: 'B',
          release: '2.0.0',
          entries: ['ferry-A.conf', 'ferry-B+2-1.conf'],
          bootCheckRc: 0,
        },
        vm.tail(),
      );
      assert.equal((await vm.run('sync', 30_000)).rc, 0);
      assert.deepEqual(entries(), ['ferry-A.conf', 'ferry-B.conf']);
    });
  });

  describe('when the kernel of v4 panics', () => {
    it('systemd-boot tries A once, counts it out and boots B by itself', async () => {
      // One attempt instead of three (the setting in B's overlay, not in the image).
      const lower = "sed -i 's/^boot-attempts = 3$/boot-attempts = 1/' /etc/ferry/system.toml";
      assert.equal((await vm.run(lower, 30_000)).rc, 0, vm.tail());
      const install = await vm.run(updateCommand(srv.guestUrl('/v4.fbd')), 600_000);
      assert.equal(install.rc, 0, vm.tail());
      assert.equal((await vm.run('sync', 30_000)).rc, 0);
      assert.deepEqual(entries(), ['ferry-A+1.conf', 'ferry-B.conf']);
      assert.deepEqual(kernels(), [files.good, files.panic, files.kernel].sort());
      const from = vm.mark();
      vm.send('sync; reboot -f');
      await vm.waitFor(/Kernel panic/, BOOT_MS, from);
      const boot = await waitSdBoot(vm, from);
      assert.deepEqual(
        boot,
        {
          slot: 'B',
          release: '2.0.0',
          entries: ['ferry-A+0-1.conf', 'ferry-B.conf'],
          bootCheckRc: 0,
        },
        vm.tail(),
      );
      const inits = vm.lines.slice(from).filter((l) => l.text.startsWith('FERRY-INIT: up'));
      assert.equal(inits.length, 1, 'A never reached its root');
    });

    it("the agent on B records the fallback; the ESP keeps B's entry and kernel files", async () => {
      const status = (await guestJson(vm, 'ferry status --json')) as StatusReport;
      assert.equal(status.booted?.bootname, 'B');
      assert.equal(status.bootloaderBooted, 'B', 'LoaderEntrySelected names B');
      assert.equal(status.lastRollback?.from, 'rootfs.0');
      assert.equal(status.lastRollback?.to, 'rootfs.1');
      await vm.shutdown();
      assert.deepEqual(entries(), ['ferry-A+0-1.conf', 'ferry-B.conf']);
      const b = readEspFile(run.disk, run.artefacts.layout, '/loader/entries/ferry-B.conf');
      assert.match(b?.toString() ?? '', new RegExp(`^initrd /ferry/${files.good}$`, 'm'));
      assert.deepEqual(kernels(), [files.good, files.panic, files.kernel].sort());
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
