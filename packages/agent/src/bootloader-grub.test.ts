import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isFerryError } from '@ferry/core';
import { bootloaderConformance, needs, tempDir } from '@ferry/testing';
import type { BootloaderContext } from './bootloader.ts';
import { GRUB_MAX_ATTEMPTS, GrubBootloader } from './bootloader-grub.ts';
import { GrubEnv, readGrubEnv, writeGrubEnv } from './grub-env.ts';

const CFG = new URL('../../../contrib/grub/ferry-ab.cfg', import.meta.url);
const SLOTS = ['A', 'B'];
const words = (s: string | undefined) => (s ?? '').split(/[ \t\n]+/).filter((w) => w !== '');

/**
 * contrib/grub/ferry-ab.cfg step for step, on the real grubenv file: defaults, load_env, the
 * walk over ORDER with the 9..1 count-down chain, save_env of the decremented X_LEFT only, and
 * the last-resort fallback. Returns the slot GRUB would boot.
 */
async function ferryAbCfg(path: string): Promise<string> {
  const block = (await readGrubEnv(path)) ?? GrubEnv.create();
  const vars = new Map<string, string>([
    ['ORDER', 'A B'],
    ['A_OK', '1'],
    ['B_OK', '1'],
  ]);
  for (const [k, v] of block.entries()) vars.set(k, v);
  let slot = '';
  for (const s of words(vars.get('ORDER'))) {
    for (const x of SLOTS) {
      if (s !== x || vars.get(`${x}_OK`) !== '1') continue;
      const left = vars.get(`${x}_LEFT`) ?? '';
      if (left === '') slot = x;
      else if (/^[1-9]$/.test(left)) {
        vars.set(`${x}_LEFT`, String(Number(left) - 1));
        slot = x;
      }
      if (slot !== '' && left !== '') {
        block.set(`${x}_LEFT`, vars.get(`${x}_LEFT`) ?? '');
        await writeGrubEnv(path, block);
      }
    }
    if (slot !== '') break;
  }
  return slot !== '' ? slot : (words(vars.get('ORDER'))[0] ?? 'A');
}

/** RAUC's contrib/grub.conf step for step (one try per slot until marked good). */
async function raucGrubConf(path: string): Promise<string | undefined> {
  const block = (await readGrubEnv(path)) ?? GrubEnv.create();
  const v = new Map<string, string>([['ORDER', 'A B']]);
  for (const x of SLOTS) v.set(`${x}_OK`, '0').set(`${x}_TRY`, '0');
  for (const [k, val] of block.entries()) v.set(k, val);
  const num = (k: string) => Number.parseInt(v.get(k) ?? '', 10) || 0;
  let def = 0;
  let ok = '';
  let tr = '';
  for (const s of words(v.get('ORDER'))) {
    const i = SLOTS.indexOf(s);
    if (i >= 0) {
      [ok, tr] = [v.get(`${s}_OK`) ?? '', v.get(`${s}_TRY`) ?? ''];
      v.set(`${s}_TRY`, '1');
    }
    if ((Number.parseInt(ok, 10) || 0) === 1 && (Number.parseInt(tr, 10) || 0) === 0) {
      def = i + 1;
      break;
    }
  }
  if (def === 0)
    for (const x of SLOTS)
      if (num(`${x}_OK`) === 1 && num(`${x}_TRY`) === 1) v.set(`${x}_TRY`, '0');
  for (const x of SLOTS) block.set(`${x}_TRY`, v.get(`${x}_TRY`) ?? '');
  await writeGrubEnv(path, block);
  return def === 0 ? undefined : SLOTS[def - 1];
}

async function setup(options: Record<string, unknown> = {}, provision?: Record<string, string>) {
  const { dir, cleanup } = await tempDir('ferry-bl-grub-');
  const path = join(dir, 'grubenv');
  if (provision) {
    const env = GrubEnv.create();
    for (const [k, v] of Object.entries(provision)) env.set(k, v);
    await writeGrubEnv(path, env);
  }
  const ctx: BootloaderContext = {
    root: dir,
    bootnames: SLOTS,
    options: { env: '/grubenv', ...options },
    attempts: 3,
  };
  return { dir, path, ctx, make: () => new GrubBootloader(ctx), cleanup };
}

bootloaderConformance({
  name: 'grub (scheme left, fixture: ferry-ab.cfg model)',
  reportsAttempts: true,
  maxAttempts: GRUB_MAX_ATTEMPTS,
  async make() {
    const s = await setup({}, { ORDER: 'A B', A_OK: '1', B_OK: '1' });
    return {
      bootloader: s.make(),
      boot: () => ferryAbCfg(s.path),
      reopen: () => Promise.resolve(s.make()),
      cleanup: s.cleanup,
    };
  },
});

async function withSetup(
  fn: (s: Awaited<ReturnType<typeof setup>>) => Promise<void> | void,
  options?: Record<string, unknown>,
  provision?: Record<string, string>,
): Promise<void> {
  const s = await setup(options, provision);
  try {
    await fn(s);
  } finally {
    await s.cleanup();
  }
}

describe('bootloader-grub', () => {
  describe('when reading contrib/grub/ferry-ab.cfg', () => {
    it('is valid GRUB script', needs('grub-script-check'), () => {
      execFileSync('grub-script-check', [CFG.pathname]);
    });

    it('has the defaults and the 9..1 count-down the fixture models', async () => {
      const cfg = await readFile(CFG, 'utf8');
      for (const line of ['set ORDER="A B"', 'set A_OK=1', 'set B_OK=1', 'load_env'])
        assert.ok(cfg.includes(`\n${line}\n`), line);
      for (const x of SLOTS) {
        assert.ok(cfg.includes(`if [ -z "$${x}_LEFT" ]; then set ferry_slot=${x}\n`));
        for (let n = 1; n <= GRUB_MAX_ATTEMPTS; n++)
          assert.ok(
            cfg.includes(
              `elif [ "$${x}_LEFT" = "${n}" ]; then set ${x}_LEFT=${n - 1}; set ferry_slot=${x}\n`,
            ),
            `${x}_LEFT=${n}`,
          );
        assert.ok(cfg.includes(`menuentry "Ferry slot ${x}" --id ferry-${x} {`));
      }
    });
  });

  describe('when B is made primary', () => {
    it('writes RAUC-named variables grub-editenv lists', needs('grub-editenv'), () =>
      withSetup(async (s) => {
        await s.make().setPrimary('B', 3);
        const listed = execFileSync('grub-editenv', [s.path, 'list'], { encoding: 'latin1' });
        assert.equal(listed, 'ORDER=B A\nB_OK=1\nB_LEFT=3\n');
        await s.make().setState('B', 'good');
        const after = execFileSync('grub-editenv', [s.path, 'list'], { encoding: 'latin1' });
        assert.equal(after, 'ORDER=B A\nB_OK=1\n');
      }),
    );

    it('caps the attempts at 9', () =>
      withSetup(async (s) => {
        const bl = s.make();
        await bl.setPrimary('B', 20);
        assert.equal((await bl.getState('B')).attemptsLeft, GRUB_MAX_ATTEMPTS);
        const booted: string[] = [];
        for (let i = 0; i < GRUB_MAX_ATTEMPTS + 1; i++) booted.push(await ferryAbCfg(s.path));
        assert.deepEqual(booted, [...Array<string>(GRUB_MAX_ATTEMPTS).fill('B'), 'A']);
      }));

    it('refuses fewer than one attempt', () =>
      withSetup(async (s) => {
        await assert.rejects(s.make().setPrimary('B', 0), (e) => isFerryError(e, 'CONFIG_INVALID'));
      }));

    it('keeps unknown variables and comment lines untouched', needs('grub-editenv'), () =>
      withSetup(async (s) => {
        execFileSync('grub-editenv', [s.path, 'create']);
        execFileSync('grub-editenv', [s.path, 'set', 'saved_entry=x', 'odd=a\\b']);
        await s.make().setPrimary('B', 2);
        const env = await readGrubEnv(s.path);
        assert.deepEqual(env?.entries().slice(0, 2), [
          ['saved_entry', 'x'],
          ['odd', 'a\\b'],
        ]);
        assert.ok((await readFile(s.path, 'latin1')).includes('# WARNING: Do not edit'));
      }),
    );
  });

  describe('when the grubenv file does not exist', () => {
    it('reads as freshly provisioned and creates the file on the first write', () =>
      withSetup(async (s) => {
        const bl = s.make();
        assert.equal(await bl.getPrimary(), 'A');
        assert.equal(await ferryAbCfg(s.path), 'A');
        await bl.setPrimary('B', 1);
        assert.equal((await readFile(s.path)).length, 1024);
        assert.equal(await ferryAbCfg(s.path), 'B');
      }));
  });

  describe('when no slot is bootable', () => {
    it('the script boots the first slot in ORDER as a last resort', () =>
      withSetup(async (s) => {
        const bl = s.make();
        await bl.setPrimary('B', 1);
        await bl.setState('A', 'bad');
        assert.equal(await ferryAbCfg(s.path), 'B');
        assert.equal(await bl.getPrimary(), undefined);
        assert.equal(await ferryAbCfg(s.path), 'B');
      }));
  });

  describe('when the grubenv is corrupt', () => {
    it('refuses with BOOTLOADER_STATE_INVALID', () =>
      withSetup(async (s) => {
        await writeGrubEnv(s.path, GrubEnv.create());
        await writeFile(s.path, 'ORDER=A B\n');
        await assert.rejects(s.make().getPrimary(), (e) =>
          isFerryError(e, 'BOOTLOADER_STATE_INVALID'),
        );
      }));
  });

  describe('when configured', () => {
    it('refuses unknown keys, relative paths, unknown schemes and unusable bootnames', () =>
      withSetup((s) => {
        const bad = (ctx: Partial<BootloaderContext>) => () =>
          new GrubBootloader({ ...s.ctx, ...ctx });
        const code = (e: unknown) => isFerryError(e, 'CONFIG_INVALID');
        assert.throws(bad({ options: { grubenv: '/x' } }), code);
        assert.throws(bad({ options: { env: 'boot/grubenv' } }), code);
        assert.throws(bad({ options: { scheme: 'barebox' } }), code);
        assert.throws(bad({ bootnames: ['A', 'rootfs-b'] }), code);
      }));
  });

  describe('when the scheme is rauc', () => {
    const provision = { ORDER: 'A B', A_OK: '1', A_TRY: '0', B_OK: '1', B_TRY: '0' };

    it('writes what RAUC writes: X_OK=1 X_TRY=0 on set-primary and mark-good, X_OK=0 on mark-bad', () =>
      withSetup(
        async (s) => {
          const bl = s.make();
          await bl.setPrimary('B', 3);
          let env = await readGrubEnv(s.path);
          assert.deepEqual(
            [env?.get('ORDER'), env?.get('B_OK'), env?.get('B_TRY'), env?.get('B_LEFT')],
            ['B A', '1', '0', undefined],
          );
          await bl.setState('B', 'bad');
          env = await readGrubEnv(s.path);
          assert.deepEqual(
            [env?.get('ORDER'), env?.get('B_OK'), env?.get('B_TRY')],
            ['B A', '0', '0'],
          );
          assert.equal(await bl.getPrimary(), 'A');
        },
        { scheme: 'rauc' },
        provision,
      ));

    it('gives one try: the booted slot reads bad until marked good, which must happen every boot', () =>
      withSetup(
        async (s) => {
          const bl = s.make();
          await bl.setPrimary('B', 3);
          assert.equal(await raucGrubConf(s.path), 'B');
          assert.equal((await bl.getState('B')).state, 'bad');
          await bl.setState('B', 'good');
          assert.equal(await raucGrubConf(s.path), 'B');
          await bl.setState('B', 'good');
          assert.equal(await raucGrubConf(s.path), 'B');
          assert.equal(await raucGrubConf(s.path), 'A', 'no mark-good: B is not tried again');
        },
        { scheme: 'rauc' },
        provision,
      ));
  });
});

describe('bootloader-grub kexec counting', () => {
  const orders = [undefined, 'A B', 'B A'];
  const oks = [undefined, '1', '0'];
  const lefts = [undefined, '0', '1', '3'];
  /** Every grubenv these value lists make, as variable tables. */
  function* states(): Generator<Record<string, string>> {
    for (const ORDER of orders)
      for (const A_OK of oks)
        for (const B_OK of oks)
          for (const A_LEFT of lefts)
            for (const B_LEFT of lefts) {
              const v = { ORDER, A_OK, B_OK, A_LEFT, B_LEFT };
              yield Object.fromEntries(
                Object.entries(v).filter((e): e is [string, string] => e[1] !== undefined),
              );
            }
  }

  describe('when a boot is counted by the agent instead of ferry-ab.cfg', () => {
    it('chooses the slot the script boots and leaves the same grubenv, in every state', () =>
      withSetup(async (s) => {
        const model = join(s.dir, 'model-grubenv');
        for (const vars of states()) {
          const env = GrubEnv.create();
          for (const [k, v] of Object.entries(vars)) env.set(k, v);
          await writeGrubEnv(s.path, env);
          await writeGrubEnv(model, env);
          const bl = s.make();
          const next = await bl.nextBoot();
          const scripted = await ferryAbCfg(model);
          const what = JSON.stringify(vars);
          if (next.bootname === undefined) {
            // Only the script's last resort is left: kexec refuses, the script changes nothing.
            assert.deepEqual(await readFile(model), await readFile(s.path), what);
            continue;
          }
          assert.equal(next.bootname, scripted, what);
          await bl.countBootAttempt(next.bootname);
          assert.deepEqual(await readFile(s.path), await readFile(model), what);
          assert.equal(
            next.attemptsLeft,
            (await bl.getState(next.bootname)).attemptsLeft,
            `attempts left after the boot: ${what}`,
          );
        }
      }));
  });

  describe('when the count is given back', () => {
    it('restores the grubenv byte for byte', () =>
      withSetup(
        async (s) => {
          const before = await readFile(s.path);
          const giveBack = await s.make().countBootAttempt('B');
          assert.equal((await readGrubEnv(s.path))?.get('B_LEFT'), '1');
          await giveBack();
          assert.deepEqual(await readFile(s.path), before);
        },
        {},
        { ORDER: 'B A', A_OK: '1', B_OK: '1', B_LEFT: '2' },
      ));
  });

  describe('when the slot asked for is not the one the script would boot', () => {
    it('refuses with KEXEC_NO_TARGET and writes nothing', () =>
      withSetup(
        async (s) => {
          const before = await readFile(s.path);
          await assert.rejects(s.make().countBootAttempt('A'), (e) =>
            isFerryError(e, 'KEXEC_NO_TARGET'),
          );
          assert.deepEqual(await readFile(s.path), before);
        },
        {},
        { ORDER: 'B A', A_OK: '1', B_OK: '1', B_LEFT: '2' },
      ));
  });

  describe('when the scheme is rauc', () => {
    it("sets X_TRY=1 as RAUC's script does when it boots X", () =>
      withSetup(
        async (s) => {
          const bl = s.make();
          await bl.setPrimary('B', 3);
          const next = await bl.nextBoot();
          assert.equal(next.bootname, 'B');
          await bl.countBootAttempt('B');
          assert.equal((await readGrubEnv(s.path))?.get('B_TRY'), '1');
          assert.equal(await raucGrubConf(s.path), 'A', 'the script sees B tried');
        },
        { scheme: 'rauc' },
        { ORDER: 'A B', A_OK: '1', A_TRY: '0', B_OK: '1', B_TRY: '0' },
      ));
  });
});
