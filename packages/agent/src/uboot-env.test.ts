import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { isFerryError } from '@ferry/core';
import { needs, tempDir } from '@ferry/testing';
import {
  decodeUbootEnv,
  encodeUbootEnv,
  formatUbootEnv,
  parseFwEnvConfig,
  readUbootEnv,
  type UbootEnvLayout,
  writeUbootEnv,
} from './uboot-env.ts';

const SIZE = 0x2000;
const invalid = (e: unknown) => isFerryError(e, 'BOOTLOADER_STATE_INVALID');

interface Env {
  dir: string;
  image: string;
  config: string;
  layout: UbootEnvLayout;
}

/** An image file with the env at 0x1000 (and its redundant copy at 0x3000), plus its fw_env.config. */
async function withEnv(redundant: boolean, fn: (e: Env) => Promise<void>): Promise<void> {
  const { dir, cleanup } = await tempDir('ferry-ubootenv-');
  try {
    const image = join(dir, 'env.img');
    await writeFile(image, Buffer.alloc(0x6000, 0xff));
    const copies = [{ path: image, offset: 0x1000 }];
    if (redundant) copies.push({ path: image, offset: 0x3000 });
    const config = join(dir, 'fw_env.config');
    await writeFile(
      config,
      `# device offset size\n${copies.map((c) => `${c.path} 0x${c.offset.toString(16)} 0x${SIZE.toString(16)}`).join('\n')}\n`,
    );
    await fn({ dir, image, config, layout: { size: SIZE, copies } });
  } finally {
    await cleanup();
  }
}

const printenv = (e: Env) => execFileSync('fw_printenv', ['-c', e.config], { encoding: 'latin1' });
const setenv = (e: Env, k: string, v: string) => execFileSync('fw_setenv', ['-c', e.config, k, v]);
const vars = (o: Record<string, string>) => new Map(Object.entries(o));

async function patch(path: string, offset: number, data: Buffer): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.write(data, 0, data.length, offset);
  } finally {
    await fh.close();
  }
}

describe('uboot-env', () => {
  for (const redundant of [false, true]) {
    describe(`when the environment is ${redundant ? 'redundant' : 'a single copy'}`, () => {
      it('is read by fw_printenv after Ferry writes it', needs('fw_printenv'), () =>
        withEnv(redundant, async (e) => {
          await formatUbootEnv(e.layout, vars({ foo: 'bar' }));
          const s = await readUbootEnv(e.layout);
          s.vars.set('BOOT_ORDER', 'B A');
          s.vars.set('BOOT_B_LEFT', 'a');
          await writeUbootEnv(e.layout, s.vars, s);
          assert.equal(printenv(e), 'BOOT_B_LEFT=a\nBOOT_ORDER=B A\nfoo=bar\n');
        }),
      );

      it('reads what fw_setenv wrote, and writes the same bytes', needs('fw_setenv'), () =>
        withEnv(redundant, async (e) => {
          await formatUbootEnv(e.layout, vars({ zed: '1', BOOT_ORDER: 'A B' }));
          const before = await readUbootEnv(e.layout);
          const start = await readFile(e.image);
          setenv(e, 'BOOT_A_LEFT', '2');
          const theirs = await readFile(e.image);
          const s = await readUbootEnv(e.layout);
          assert.deepEqual(
            [...s.vars],
            [
              ['BOOT_ORDER', 'A B'],
              ['zed', '1'],
              ['BOOT_A_LEFT', '2'],
            ].sort(),
          );
          await writeFile(e.image, start);
          before.vars.set('BOOT_A_LEFT', '2');
          await writeUbootEnv(e.layout, before.vars, before);
          assert.deepEqual(await readFile(e.image), theirs);
        }),
      );

      it('encodes exactly what mkenvimage -p 0 makes from sorted input', needs('mkenvimage'), () =>
        withEnv(redundant, async (e) => {
          await writeFile(join(e.dir, 'in.txt'), 'BOOT_ORDER=A B\nbootcmd=run x\n');
          const args = [
            '-p',
            '0',
            '-s',
            String(SIZE),
            '-o',
            join(e.dir, 'out'),
            join(e.dir, 'in.txt'),
          ];
          execFileSync('mkenvimage', redundant ? ['-r', ...args] : args);
          const ours = encodeUbootEnv(
            vars({ bootcmd: 'run x', BOOT_ORDER: 'A B' }),
            SIZE,
            redundant ? 1 : undefined,
          );
          assert.deepEqual(ours, await readFile(join(e.dir, 'out')));
        }),
      );
    });
  }

  describe('when one redundant copy is corrupt', () => {
    it('falls back to the other copy, as fw_printenv does', needs('fw_printenv'), () =>
      withEnv(true, async (e) => {
        await formatUbootEnv(e.layout, vars({ v: 'old' }));
        const s = await readUbootEnv(e.layout);
        s.vars.set('v', 'new');
        await writeUbootEnv(e.layout, s.vars, s);
        assert.equal((await readUbootEnv(e.layout)).vars.get('v'), 'new');
        await patch(e.image, 0x3000 + 100, Buffer.from('garbage'));
        assert.equal((await readUbootEnv(e.layout)).vars.get('v'), 'old');
        assert.equal(printenv(e), 'v=old\n');
      }),
    );

    it('leaves the old state readable after a torn write', () =>
      withEnv(true, async (e) => {
        await formatUbootEnv(e.layout, vars({ v: 'old' }));
        const s = await readUbootEnv(e.layout);
        const target = e.layout.copies[1 - s.copy]?.offset ?? -1;
        const image = encodeUbootEnv(vars({ v: 'new', w: 'x'.repeat(3000) }), SIZE, s.flag + 1);
        // The power fails after the first KiB of the new copy reached the disk.
        await patch(e.image, target, image.subarray(0, 1024));
        const after = await readUbootEnv(e.layout);
        assert.deepEqual(
          [after.copy, after.vars.get('v'), after.vars.has('w')],
          [s.copy, 'old', false],
        );
      }));
  });

  describe('when every copy is corrupt', () => {
    for (const redundant of [false, true])
      it(`refuses with BOOTLOADER_STATE_INVALID (${redundant ? 'redundant' : 'single'})`, () =>
        withEnv(redundant, async (e) => {
          await assert.rejects(readUbootEnv(e.layout), invalid);
          await formatUbootEnv(e.layout, vars({ v: '1' }));
          for (const c of e.layout.copies)
            await patch(e.image, c.offset, Buffer.from([0, 0, 0, 0]));
          await assert.rejects(readUbootEnv(e.layout), invalid);
        }));
  });

  describe('when the redundant flag wraps', () => {
    it('takes flag 0 over flag 255 and writes flag 0 after 255', needs('fw_printenv'), () =>
      withEnv(true, async (e) => {
        await patch(e.image, 0x1000, encodeUbootEnv(vars({ v: 'at255' }), SIZE, 255));
        await patch(e.image, 0x3000, encodeUbootEnv(vars({ v: 'at0' }), SIZE, 0));
        const s = await readUbootEnv(e.layout);
        assert.deepEqual([s.copy, s.flag, s.vars.get('v')], [1, 0, 'at0']);
        assert.equal(printenv(e), 'v=at0\n');
        await patch(e.image, 0x3000, encodeUbootEnv(vars({ v: 'at254' }), SIZE, 254));
        const t = await readUbootEnv(e.layout);
        assert.deepEqual([t.copy, t.flag], [0, 255]);
        t.vars.set('v', 'wrapped');
        await writeUbootEnv(e.layout, t.vars, t);
        const u = await readUbootEnv(e.layout);
        assert.deepEqual([u.copy, u.flag, u.vars.get('v')], [1, 0, 'wrapped']);
        assert.equal(printenv(e), 'v=wrapped\n');
      }),
    );
  });

  describe('when encoding', () => {
    it('decode(encode(x)) gives back every non-empty variable', () => {
      const name = fc.stringMatching(/^[A-Za-z_.][A-Za-z0-9_.]{0,15}$/);
      const value = fc.string({
        unit: fc.integer({ min: 1, max: 255 }).map((c) => String.fromCharCode(c)),
        minLength: 1,
        maxLength: 40,
      });
      fc.assert(
        fc.property(fc.dictionary(name, value, { maxKeys: 20 }), fc.boolean(), (o, redundant) => {
          const m = vars(o);
          const got = decodeUbootEnv(encodeUbootEnv(m, 2048, redundant ? 7 : undefined), redundant);
          assert.deepEqual(got?.vars, m);
        }),
        { numRuns: 300 },
      );
    });

    it('refuses variables that do not fit, and names with = or NUL', () => {
      assert.throws(() => encodeUbootEnv(vars({ a: 'x'.repeat(100) }), 100), invalid);
      assert.throws(() => encodeUbootEnv(vars({ 'a=b': '1' }), 100), invalid);
      assert.throws(() => encodeUbootEnv(vars({ 'a\0': '1' }), 100), invalid);
      assert.equal(encodeUbootEnv(vars({ a: 'x'.repeat(100 - 4 - 4) }), 100).length, 100);
    });
  });

  describe('when parsing fw_env.config', () => {
    it('reads offsets in hex or decimal and sizes in hex, ignoring comments and sector fields', () => {
      const l = parseFwEnvConfig(
        '# c\n/dev/mmcblk0 0x3f8000 0x4000 0x200\n\n/dev/mmcblk0 4177920 4000\n',
      );
      assert.deepEqual(l, {
        size: 0x4000,
        copies: [
          { path: '/dev/mmcblk0', offset: 0x3f8000 },
          { path: '/dev/mmcblk0', offset: 0x3fc000 },
        ],
      });
    });

    it('refuses unequal sizes, three lines and garbage', () => {
      const code = (e: unknown) => isFerryError(e, 'CONFIG_INVALID');
      assert.throws(() => parseFwEnvConfig('/d 0 0x4000\n/d 0x4000 0x2000\n'), code);
      assert.throws(() => parseFwEnvConfig('/d 0 0x4000\n/d 0x4000 16384\n'), code, '16384 is hex');
      assert.throws(() => parseFwEnvConfig('/d 0 0x4000\n/d 1 0x4000\n/d 2 0x4000\n'), code);
      assert.throws(() => parseFwEnvConfig('/d zero 0x4000\n'), code);
      assert.throws(() => parseFwEnvConfig('# nothing\n'), code);
    });
  });
});
