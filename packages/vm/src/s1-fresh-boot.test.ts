import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { StatusReport } from '@ferry/agent';
import { needs } from '@ferry/testing';
import { startFileServer, type FileServer } from './file-server.ts';
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

describe('S1 fresh boot of slot A', needs(...VM_CAPS), () => {
  let run: Run;
  let vm: Vm;
  let srv: FileServer;
  before(async () => {
    run = await prepareRun('s1-fresh-boot');
    srv = await startFileServer({ '/hello.txt': { body: 'hello from the update host\n' } });
    vm = Vm.start(run);
  });
  after(async () => {
    await vm?.powerCut();
    await srv?.close();
  });

  describe('when the provisioned disk boots for the first time', () => {
    it('GRUB boots slot A on trial and the boot check commits v1', async () => {
      const boot = await waitBoot(vm, 0);
      assert.equal(boot.slot, 'A', vm.tail());
      assert.match(boot.grub, /A_LEFT=2/, vm.tail());
      assert.equal(boot.release, '1.0.0');
      assert.equal(boot.bootCheckRc, 0, vm.tail());
      const status = (await guestJson(vm, 'ferry status --json')) as StatusReport;
      assert.equal(status.booted?.bootname, 'A');
      assert.equal(status.pendingSlot, undefined);
      assert.equal(status.slots.find((s) => s.bootname === 'A')?.boot?.state, 'good');
    });

    it('the guest reaches the update host on 10.0.2.2', async () => {
      const { rc, output } = await vm.run(`wget -qO- ${srv.guestUrl('/hello.txt')}`, 60_000);
      assert.equal(rc, 0, vm.tail());
      assert.ok(output.includes('hello from the update host'), vm.tail());
      assert.ok(srv.requests.includes('GET /hello.txt'));
    });

    it('the disk shows v1 committed in A after power-off', async () => {
      await vm.shutdown();
      const { grub, state } = deviceState(run);
      assert.equal(grub.ORDER, 'A B');
      assert.equal(grub.A_OK, '1');
      assert.equal(grub.A_LEFT, undefined);
      assert.equal(state.pendingSlot, undefined);
      assert.equal(state.highWaterCounter, 1);
      assert.equal(state.slots['rootfs.0']?.release?.version, '1.0.0');
      console.log(`# timing ${recordTiming(run)}`);
    });
  });
});
