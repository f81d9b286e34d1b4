import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isFerryError } from '@ferry/core';
import { bootloaderConformance, tempDir } from '@ferry/testing';
import { BareboxBootloader, bootchooserChoice } from './bootloader-barebox.ts';
import { runBootTool } from './bootloader-tool.ts';

const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url));

/** Provisioned bootchooser state: A primary (20), B fallback (10), 3 attempts each. */
async function bareboxRoot(opts: { lock: boolean }) {
  const { dir, cleanup } = await tempDir('ferry-bl-barebox-');
  await symlink(join(fixtures, 'barebox-state'), join(dir, 'barebox-state'));
  await symlink(join(fixtures, 'barebox-bootchooser'), join(dir, 'barebox-bootchooser'));
  await mkdir(join(dir, 'proc'));
  const vars = [
    'bootstate.A.priority=20',
    'bootstate.A.remaining_attempts=3',
    'bootstate.B.priority=10',
    'bootstate.B.remaining_attempts=3',
    'bootstate.last_chosen=0',
    ...(opts.lock ? ['bootstate.attempts_locked=1'] : []),
  ];
  await writeFile(join(dir, 'state-state.txt'), `${vars.join('\n')}\n`);
  const make = (options: Record<string, unknown> = {}) =>
    new BareboxBootloader({
      root: dir,
      bootnames: ['A', 'B'],
      options: { tool: '/barebox-state', 'lock-attempts': opts.lock, ...options },
      attempts: 3,
    });
  const env = { FAKE_CMDLINE: join(dir, 'proc/cmdline') };
  const boot = async () =>
    (
      await runBootTool(join(dir, 'barebox-bootchooser'), ['bootstate', 'A', 'B'], { env })
    ).trim() || undefined;
  const state = () => readFile(join(dir, 'state-state.txt'), 'utf8');
  return { dir, cleanup, make, boot, state };
}

bootloaderConformance({
  name: 'barebox (fake barebox-state, lock-attempts = true)',
  reportsAttempts: true,
  async make() {
    const r = await bareboxRoot({ lock: true });
    return {
      bootloader: r.make(),
      boot: r.boot,
      reopen: () => Promise.resolve(r.make()),
      cleanup: r.cleanup,
    };
  },
});

describe('barebox bootloader', () => {
  describe('when choosing like bootchooser', () => {
    it('takes the highest priority with attempts left, the later target on a tie', () => {
      assert.equal(
        bootchooserChoice([
          { name: 'A', priority: 20, attempts: 0 },
          { name: 'B', priority: 10, attempts: 1 },
        ]),
        'B',
      );
      assert.equal(
        bootchooserChoice([
          { name: 'A', priority: 10, attempts: 3 },
          { name: 'B', priority: 10, attempts: 3 },
        ]),
        'B',
      );
      assert.equal(bootchooserChoice([{ name: 'A', priority: 0, attempts: 3 }]), undefined);
    });
  });

  describe('when B is made primary (RAUC values)', () => {
    it('writes priority 20/10 and remaining_attempts, and mark-bad zeroes both', async () => {
      const r = await bareboxRoot({ lock: false });
      try {
        const bl = r.make();
        await bl.setPrimary('B', 5);
        assert.match(
          await r.state(),
          /A\.priority=10\n.*\nbootstate\.B\.priority=20\nbootstate\.B\.remaining_attempts=5\n/s,
        );
        await bl.setState('B', 'bad');
        assert.match(await r.state(), /B\.priority=0\nbootstate\.B\.remaining_attempts=0\n/);
        await bl.setPrimary('A', 3);
        assert.match(await r.state(), /B\.priority=0\n/, 'a disabled target stays disabled');
      } finally {
        await r.cleanup();
      }
    });
  });

  describe('when attempts are not locked (RAUC mode) and B is marked good once', () => {
    it('falls back to A after the default attempts unless marked good on every boot', async () => {
      const r = await bareboxRoot({ lock: false });
      try {
        const bl = r.make();
        await bl.setPrimary('B', 3);
        assert.equal(await r.boot(), 'B');
        await bl.setState('B', 'good');
        // bootchooser decrements on every start; RAUC re-marks good on every boot.
        assert.deepEqual(
          [await r.boot(), await r.boot(), await r.boot(), await r.boot()],
          ['B', 'B', 'B', 'A'],
        );
      } finally {
        await r.cleanup();
      }
    });
  });

  describe('when a slot on trial exists and the running slot is marked good', () => {
    it('does not lock the attempts, so the trial still counts', async () => {
      const r = await bareboxRoot({ lock: true });
      try {
        const bl = r.make();
        await bl.setPrimary('B', 2);
        await bl.setState('A', 'good');
        assert.match(await r.state(), /attempts_locked=0/);
        assert.deepEqual([await r.boot(), await r.boot(), await r.boot()], ['B', 'B', 'A']);
        assert.equal(await bl.getCurrent(), 'A');
      } finally {
        await r.cleanup();
      }
    });
  });

  describe('when barebox-state fails or prints garbage', () => {
    it('reports BOOTLOADER_FAILED or BOOTLOADER_STATE_INVALID', async () => {
      const r = await bareboxRoot({ lock: false });
      try {
        await assert.rejects(r.make({ 'state-name': 'other' }).getPrimary(), (e) =>
          isFerryError(e, 'BOOTLOADER_FAILED'),
        );
        await writeFile(join(r.dir, 'state-state.txt'), 'bootstate.A.priority=20\n');
        await assert.rejects(r.make().getState('A'), (e) => isFerryError(e, 'BOOTLOADER_FAILED'));
        await writeFile(join(r.dir, 'odd'), '#!/bin/sh\necho 20\necho lots\n');
        await runBootTool('chmod', ['+x', join(r.dir, 'odd')]);
        await assert.rejects(r.make({ tool: '/odd' }).getState('A'), (e) =>
          isFerryError(e, 'BOOTLOADER_STATE_INVALID'),
        );
      } finally {
        await r.cleanup();
      }
    });
  });

  describe('when configured with unknown keys', () => {
    it('refuses with CONFIG_INVALID', () => {
      assert.throws(
        () =>
          new BareboxBootloader({
            root: '/',
            bootnames: ['A'],
            options: { prefixx: 'x' },
            attempts: 3,
          }),
        (e) => isFerryError(e, 'CONFIG_INVALID'),
      );
    });
  });
});
