import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { needs } from '@ferry/testing';
import { startFileServer, type FileServer } from './file-server.ts';
import { cutInstants, installProgress } from './power-cut.ts';
import { Vm } from './qemu.ts';
import {
  deviceState,
  prepareRun,
  recordTiming,
  updateCommand,
  waitBoot,
  type Boot,
  type Run,
} from './scenario.ts';

const VM_CAPS = ['root', 'loop', 'qemu', 'grub-bios', 'busybox', 'mksquashfs', 'debugfs'] as const;
const SEED = Number(process.env.FERRY_VM_SEED ?? 20261122);
const CUTS = Number(process.env.FERRY_VM_CUTS ?? 5);
/** Wall-clock instants would land anywhere on a loaded host; progress targets do not. */
const TARGETS = cutInstants(SEED, CUTS, 1.1);

/** A release a slot may hold after any power cut: the good ones. */
const GOOD = new Map([
  ['1.0.0', 'v1'],
  ['2.0.0', 'v2'],
]);

function assertGood(boot: Boot, vm: Vm): void {
  assert.ok(GOOD.has(boot.release), `booted ${boot.release}\n${vm.tail()}`);
  assert.equal(boot.bootCheckRc, 0, vm.tail());
}

/** Where the install was when the power went, read from the disk. */
function phaseOnDisk(run: Run): string {
  const { grub, state } = deviceState(run);
  const writing = Object.entries(state.slots).find(([, r]) => r.status === 'writing')?.[0];
  if (state.pendingSlot)
    return `committed (${state.pendingSlot} primary on trial, ORDER=${grub.ORDER})`;
  if (writing) return `${writing} writing (marked bad, never booted)`;
  return `no slot writing, nothing pending (ORDER=${grub.ORDER})`;
}

describe('S4 power cuts during an update', needs(...VM_CAPS), () => {
  let run: Run;
  let vm: Vm;
  let srv: FileServer;
  const report: string[] = [];
  before(async () => {
    run = await prepareRun('s4-power-cut');
    srv = await startFileServer({ '/v2.fbd': { file: run.artefacts.bundles.v2 ?? '' } });
    vm = Vm.start(run);
  });
  after(async () => {
    await vm?.powerCut();
    await srv?.close();
  });

  describe(`when qemu is killed ${CUTS} times during \`${updateCommand('URL', true)}\` (seed ${SEED})`, () => {
    it('every restart boots a good system', async () => {
      assertGood(await waitBoot(vm, 0), vm);
      for (const [i, target] of TARGETS.entries()) {
        const from = vm.mark();
        const t0 = Date.now();
        vm.send(`${updateCommand(srv.guestUrl('/v2.fbd'), true)}; echo "FERRY-CUT""-DONE"`);
        const at = await vm.waitLine(
          (t) => (installProgress(t) ?? -1) >= target || t === 'FERRY-CUT-DONE',
          600_000,
          from,
          `install progress ${target}`,
        );
        await vm.powerCut();
        const s = ((Date.now() - t0) / 1000).toFixed(1);
        const line = `cut ${i + 1}/${CUTS} at progress ${target} (${s} s, after ${at.slice(0, 60)}): ${phaseOnDisk(run)}`;
        report.push(line);
        console.log(`# ${line}`);
        vm = Vm.start(run);
        const boot = await waitBoot(vm, 0);
        assertGood(boot, vm);
        report[report.length - 1] += `; restart booted ${boot.slot} ${boot.release}`;
      }
    });

    it('a re-run of the update completes and its slot boots v2', async () => {
      const { rc } = await vm.run(updateCommand(srv.guestUrl('/v2.fbd')), 600_000);
      assert.equal(rc, 0, vm.tail());
      const from = vm.mark();
      vm.send('sync; reboot -f');
      const boot = await waitBoot(vm, from);
      assert.deepEqual([boot.release, boot.bootCheckRc], ['2.0.0', 0], vm.tail());
      await vm.shutdown();
      const { state } = deviceState(run);
      assert.equal(state.pendingSlot, undefined);
      assert.equal(state.highWaterCounter, 2);
      console.log(`# power cuts (seed ${SEED}):\n# ${report.join('\n# ')}`);
      console.log(`# timing ${recordTiming(run, `${CUTS} cuts`)}`);
    });
  });
});
