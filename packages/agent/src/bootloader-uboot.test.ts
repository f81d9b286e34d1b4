import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isFerryError } from '@ferry/core';
import { bootloaderConformance, needs, tempDir } from '@ferry/testing';
import type { BootloaderContext } from './bootloader.ts';
import { UbootBootloader } from './bootloader-uboot.ts';
import { formatUbootEnv, readUbootEnv, type UbootEnvLayout, writeUbootEnv } from './uboot-env.ts';

const SCRIPT = new URL('../../../contrib/uboot/ferry-boot.cmd', import.meta.url);
const SLOTS = ['A', 'B'];
const SIZE = 0x4000;

/** U-Boot's `test 0x${V} -gt 0` and `setexpr V ${V} - 1` on a hex value without prefix. */
const hex = (v: string | undefined) =>
  /^[0-9a-fA-F]+$/.test(v ?? '') ? Number.parseInt(v ?? '', 16) : 0;

/**
 * contrib/uboot/ferry-boot.cmd step for step, on the real environment image: the defaults, the
 * walk over BOOT_ORDER, setexpr on a trial slot's LEFT, saveenv (the whole environment, to the
 * other redundant copy) only when something was counted, and the last-resort fallback.
 */
async function ferryBootCmd(layout: UbootEnvLayout): Promise<string> {
  const env = await readUbootEnv(layout);
  const v = env.vars;
  if (!v.get('BOOT_ORDER')) v.set('BOOT_ORDER', 'A B');
  for (const x of SLOTS) if (!v.get(`BOOT_${x}_LEFT`)) v.set(`BOOT_${x}_LEFT`, '3');
  const order = (v.get('BOOT_ORDER') ?? '').split(/[ \t]+/).filter((w) => w !== '');
  let slot = '';
  let save = false;
  for (const s of order)
    for (const x of SLOTS) {
      if (slot !== '' || s !== x || !(hex(v.get(`BOOT_${x}_LEFT`)) > 0)) continue;
      slot = x;
      if (v.get(`BOOT_${x}_TRIAL`) === '1') {
        v.set(`BOOT_${x}_LEFT`, (hex(v.get(`BOOT_${x}_LEFT`)) - 1).toString(16));
        save = true;
      }
    }
  if (save) await writeUbootEnv(layout, v, env);
  return slot !== '' ? slot : (order[0] ?? 'A');
}

async function setup(redundant: boolean, viaConfig = false) {
  const { dir, cleanup } = await tempDir('ferry-bl-uboot-');
  const image = join(dir, 'mmcblk0');
  await writeFile(image, Buffer.alloc(0xc000));
  const offsets = redundant ? [0x4000, 0x8000] : [0x4000];
  const layout: UbootEnvLayout = {
    size: SIZE,
    copies: offsets.map((offset) => ({ path: image, offset })),
  };
  const initial = { BOOT_ORDER: 'A B', BOOT_A_LEFT: '3', BOOT_B_LEFT: '3', bootdelay: '2' };
  await formatUbootEnv(layout, new Map(Object.entries(initial)));
  const fwEnvConfig = (path: string) =>
    offsets.map((o) => `${path} ${o} ${SIZE.toString(16)}\n`).join('');
  // Ferry roots the device paths of its fw_env.config; fw_printenv gets the host path.
  await writeFile(join(dir, 'fw_env.config'), fwEnvConfig('/mmcblk0'));
  const hostConfig = join(dir, 'host.config');
  await writeFile(hostConfig, fwEnvConfig(image));
  const options: Record<string, unknown> = viaConfig
    ? { config: '/fw_env.config' }
    : {
        env: '/mmcblk0',
        offset: 0x4000,
        size: '0x4000',
        ...(redundant ? { 'redundant-offset': '0x8000' } : {}),
      };
  const ctx: BootloaderContext = { root: dir, bootnames: SLOTS, options, attempts: 3 };
  const printenv = (name: string) =>
    execFileSync('fw_printenv', ['-c', hostConfig, '-n', name], {
      encoding: 'latin1',
      stdio: 'pipe',
    }).trim();
  return {
    dir,
    image,
    layout,
    ctx,
    hostConfig,
    printenv,
    make: () => new UbootBootloader(ctx),
    cleanup,
  };
}

for (const [label, redundant, viaConfig] of [
  ['redundant env from options', true, false],
  ['single env from fw_env.config', false, true],
] as const)
  bootloaderConformance({
    name: `uboot (${label}, fixture: ferry-boot.cmd model)`,
    reportsAttempts: true,
    async make() {
      const s = await setup(redundant, viaConfig);
      return {
        bootloader: s.make(),
        boot: () => ferryBootCmd(s.layout),
        reopen: () => Promise.resolve(s.make()),
        cleanup: s.cleanup,
      };
    },
  });

async function withSetup(
  fn: (s: Awaited<ReturnType<typeof setup>>) => Promise<void> | void,
): Promise<void> {
  const s = await setup(true);
  try {
    await fn(s);
  } finally {
    await s.cleanup();
  }
}

describe('bootloader-uboot', () => {
  describe('when reading contrib/uboot/ferry-boot.cmd', () => {
    it('compiles with mkimage -T script', needs('mkimage'), () =>
      withSetup(async (s) => {
        const scr = join(s.dir, 'ferry-boot.scr');
        execFileSync('mkimage', [
          '-A',
          'arm64',
          '-T',
          'script',
          '-C',
          'none',
          '-n',
          'Ferry A/B',
          '-d',
          SCRIPT.pathname,
          scr,
        ]);
        const out = await readFile(scr);
        assert.equal(out.readUInt32BE(0), 0x27051956, 'legacy image magic');
        assert.equal(out[30], 6, 'image type: script');
      }),
    );

    it('is well-formed shell (if/for/fi/done balance), as hush needs', () => {
      execFileSync('sh', ['-n', SCRIPT.pathname]);
    });

    it('has the defaults, the trial-only count-down and the saveenv the fixture models', async () => {
      const cmd = await readFile(SCRIPT, 'utf8');
      assert.ok(cmd.includes('test -n "${BOOT_ORDER}" || setenv BOOT_ORDER "A B"\n'));
      for (const x of SLOTS) {
        assert.ok(cmd.includes(`test -n "\${BOOT_${x}_LEFT}" || setenv BOOT_${x}_LEFT 3\n`));
        assert.ok(
          cmd.includes(`test "x\${BOOT_SLOT}" = "x${x}" && test 0x\${BOOT_${x}_LEFT} -gt 0; then`),
        );
        assert.ok(
          cmd.includes(
            `if test "x\${BOOT_${x}_TRIAL}" = "x1"; then\n      setexpr BOOT_${x}_LEFT \${BOOT_${x}_LEFT} - 1\n      ferry_save=1\n`,
          ),
        );
      }
      assert.ok(cmd.includes('if test -n "${ferry_save}"; then\n  saveenv\nfi\n'));
    });
  });

  describe('when B is made primary', () => {
    it(
      'writes RAUC-named variables, LEFT in hex, that fw_printenv reads',
      needs('fw_printenv'),
      () =>
        withSetup(async (s) => {
          const bl = s.make();
          await bl.setPrimary('B', 12);
          assert.deepEqual(
            ['BOOT_ORDER', 'BOOT_B_LEFT', 'BOOT_B_TRIAL', 'bootdelay'].map(s.printenv),
            ['B A', 'c', '1', '2'],
          );
          assert.equal((await bl.getState('B')).attemptsLeft, 12);
          const booted = [];
          for (let i = 0; i < 13; i++) booted.push(await ferryBootCmd(s.layout));
          assert.deepEqual(booted, [...Array<string>(12).fill('B'), 'A']);
          assert.equal(s.printenv('BOOT_B_LEFT'), '0');
        }),
    );

    it('reads state that fw_setenv wrote (as RAUC would write it)', needs('fw_setenv'), () =>
      withSetup(async (s) => {
        execFileSync('fw_setenv', ['-c', s.hostConfig, 'BOOT_ORDER', 'B A']);
        execFileSync('fw_setenv', ['-c', s.hostConfig, 'BOOT_B_LEFT', 'a']);
        const bl = s.make();
        assert.equal(await bl.getPrimary(), 'B');
        assert.deepEqual(await bl.getState('B'), { state: 'good' });
        execFileSync('fw_setenv', ['-c', s.hostConfig, 'BOOT_B_LEFT', '0']);
        assert.deepEqual(await bl.getState('B'), { state: 'bad', attemptsLeft: 0 });
        assert.equal(await bl.getPrimary(), 'A');
      }),
    );

    it('refuses fewer than one attempt', () =>
      withSetup(async (s) => {
        await assert.rejects(s.make().setPrimary('B', 0), (e) => isFerryError(e, 'CONFIG_INVALID'));
      }));
  });

  describe('when a slot is marked good or bad', () => {
    it(
      'does as RAUC: good resets LEFT to the full count, bad leaves BOOT_ORDER with LEFT=0',
      needs('fw_printenv'),
      () =>
        withSetup(async (s) => {
          const bl = s.make();
          await bl.setPrimary('B', 2);
          await bl.setState('B', 'good');
          assert.deepEqual(['BOOT_ORDER', 'BOOT_B_LEFT'].map(s.printenv), ['B A', '3']);
          const all = execFileSync('fw_printenv', ['-c', s.hostConfig], { encoding: 'latin1' });
          assert.ok(!all.includes('BOOT_B_TRIAL='), 'committed: no trial flag');
          await bl.setState('B', 'bad');
          assert.deepEqual(['BOOT_ORDER', 'BOOT_B_LEFT'].map(s.printenv), ['A', '0']);
        }),
    );
  });

  describe('when both copies of the environment are corrupt', () => {
    it('refuses with BOOTLOADER_STATE_INVALID', () =>
      withSetup(async (s) => {
        await writeFile(s.image, Buffer.alloc(0xc000, 0xff));
        await assert.rejects(s.make().getPrimary(), (e) =>
          isFerryError(e, 'BOOTLOADER_STATE_INVALID'),
        );
      }));
  });

  describe('when no slot is bootable', () => {
    it('the script boots the first slot in BOOT_ORDER, writing nothing', () =>
      withSetup(async (s) => {
        const bl = s.make();
        await bl.setPrimary('B', 1);
        await bl.setState('A', 'bad');
        assert.equal(await ferryBootCmd(s.layout), 'B');
        assert.equal(await bl.getPrimary(), undefined);
        const before = await readFile(s.image);
        assert.equal(await ferryBootCmd(s.layout), 'B');
        assert.deepEqual(await readFile(s.image), before);
      }));
  });

  describe('when configured', () => {
    it('refuses unknown keys, a missing size, mixed config and relative paths', () =>
      withSetup((s) => {
        const bad = (options: Record<string, unknown>) => () =>
          new UbootBootloader({ ...s.ctx, options });
        const code = (e: unknown) => isFerryError(e, 'CONFIG_INVALID');
        assert.throws(bad({ env: '/mmcblk0', size: 0x4000, sizee: 1 }), code);
        assert.throws(bad({ env: '/mmcblk0' }), code);
        assert.throws(bad({ env: 'mmcblk0', size: 0x4000 }), code);
        assert.throws(bad({ env: '/mmcblk0', size: 'big' }), code);
        assert.throws(bad({ config: '/fw_env.config', size: 0x4000 }), code);
      }));
  });
});
