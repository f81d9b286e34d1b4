import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { isFerryError } from '@ferry/core';
import { needs, tempDir } from '@ferry/testing';
import { GRUB_ENV_SIZE, GrubEnv, readGrubEnv, writeGrubEnv } from './grub-env.ts';

const editenv = (file: string, ...args: string[]): string =>
  execFileSync('grub-editenv', [file, ...args], { encoding: 'latin1' });

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const { dir, cleanup } = await tempDir('ferry-grubenv-');
  try {
    await fn(dir);
  } finally {
    await cleanup();
  }
}

function env(vars: Record<string, string>): GrubEnv {
  const e = GrubEnv.create();
  for (const [k, v] of Object.entries(vars)) e.set(k, v);
  return e;
}

const invalid = (e: unknown) => isFerryError(e, 'BOOTLOADER_STATE_INVALID');

describe('grub-env', () => {
  describe('when compared with grub-editenv', () => {
    it('writes the same bytes as create + set a=b c=d', needs('grub-editenv'), () =>
      withDir(async (dir) => {
        const theirs = join(dir, 'theirs');
        editenv(theirs, 'create');
        editenv(theirs, 'set', 'a=b', 'c=d');
        const env = GrubEnv.create();
        env.set('a', 'b');
        env.set('c', 'd');
        assert.deepEqual(env.serialize(), await readFile(theirs));
      }),
    );

    it('edits in place, appends and removes as grub-editenv does', needs('grub-editenv'), () =>
      withDir(async (dir) => {
        const theirs = join(dir, 'theirs');
        editenv(theirs, 'create');
        editenv(theirs, 'set', 'a=1', 'b=2', 'c=3');
        const env = GrubEnv.parse(await readFile(theirs));
        editenv(theirs, 'set', 'a=longer value', 'd=4');
        editenv(theirs, 'unset', 'b');
        env.set('a', 'longer value');
        env.set('d', '4');
        env.delete('b');
        assert.deepEqual(env.serialize(), await readFile(theirs));
      }),
    );

    it(
      'has its files listed by grub-editenv, special characters included',
      needs('grub-editenv'),
      () =>
        withDir(async (dir) => {
          const ours = join(dir, 'ours');
          const env = GrubEnv.create();
          env.set('ORDER', 'B A');
          env.set('odd', 'back\\slash\nnew=line #hash \xe9');
          await writeGrubEnv(ours, env);
          assert.equal(editenv(ours, 'list'), 'ORDER=B A\nodd=back\\slash\nnew=line #hash \xe9\n');
        }),
    );

    it('reads special characters that grub-editenv wrote', needs('grub-editenv'), () =>
      withDir(async (dir) => {
        const theirs = join(dir, 'theirs');
        editenv(theirs, 'create');
        editenv(theirs, 'set', 'v=a\\b\nc\\\\', 'w=x=y');
        const env = await readGrubEnv(theirs);
        assert.equal(env?.get('v'), 'a\\b\nc\\\\');
        assert.equal(env?.get('w'), 'x=y');
        assert.deepEqual(env?.serialize(), await readFile(theirs));
      }),
    );
  });

  describe('when round-tripping', () => {
    it('parse(serialize(x)) gives back every variable', () => {
      const name = fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,15}$/);
      const value = fc.string({
        unit: fc.integer({ min: 1, max: 255 }).map((c) => String.fromCharCode(c)),
        maxLength: 40,
      });
      fc.assert(
        fc.property(
          fc.uniqueArray(fc.tuple(name, value), { selector: (t) => t[0], maxLength: 12 }),
          (vars) => {
            const env = GrubEnv.create();
            for (const [k, v] of vars) env.set(k, v);
            const block = env.serialize();
            assert.equal(block.length, GRUB_ENV_SIZE);
            assert.deepEqual(GrubEnv.parse(block).entries(), vars);
          },
        ),
        { numRuns: 300 },
      );
    });
  });

  describe('when the block is malformed', () => {
    it('refuses a block that is not exactly 1024 bytes', () => {
      const block = GrubEnv.create().serialize();
      assert.throws(() => GrubEnv.parse(block.subarray(0, 1023)), invalid);
      assert.throws(() => GrubEnv.parse(Buffer.concat([block, Buffer.from('#')])), invalid);
    });

    it('refuses a block without the header', () => {
      const block = GrubEnv.create().serialize();
      block[2] = 'g'.charCodeAt(0);
      assert.throws(() => GrubEnv.parse(block), invalid);
    });

    it('refuses an unterminated variable, a line without = and a duplicate', () => {
      const head = '# GRUB Environment Block\n';
      const pad = (s: string) => Buffer.from(s + '#'.repeat(GRUB_ENV_SIZE - s.length), 'latin1');
      assert.throws(() => GrubEnv.parse(pad(`${head}a=b\nc=d`).fill(0x41, 30)), invalid);
      assert.throws(() => GrubEnv.parse(pad(`${head}novalue\n`)), invalid);
      assert.throws(() => GrubEnv.parse(pad(`${head}a=1\na=2\n`)), invalid);
      assert.throws(() => GrubEnv.parse(pad(`${head}a=1\n##x##`)), invalid);
    });

    it('refuses an oversized file without reading it whole', () =>
      withDir(async (dir) => {
        await writeFile(join(dir, 'big'), Buffer.alloc(1 << 20, 0x23));
        await assert.rejects(readGrubEnv(join(dir, 'big')), invalid);
      }));
  });

  describe('when the variables do not fit', () => {
    it('fills the block to the last byte, and refuses one byte more', () => {
      const env = GrubEnv.create();
      // 25-byte signature + 69-byte create message + 'big=' + value + '\n' = 1024
      env.set('big', 'x'.repeat(925));
      assert.equal(env.serialize().at(-1), 0x0a);
      assert.equal(GrubEnv.parse(env.serialize()).get('big')?.length, 925);
      env.set('big', 'x'.repeat(926));
      assert.throws(() => env.serialize(), invalid);
    });

    it('refuses names GRUB could not read back', () => {
      const env = GrubEnv.create();
      for (const bad of ['', 'a=b', '#a', 'a\nb', 'a\0'])
        assert.throws(() => env.set(bad, '1'), invalid);
      assert.throws(() => env.set('a', '\u0100'), invalid);
    });
  });

  describe('when the file does not exist', () => {
    it('reads undefined', () =>
      withDir(async (dir) => {
        assert.equal(await readGrubEnv(join(dir, 'none')), undefined);
      }));
    it('is created on the first write', () =>
      withDir(async (dir) => {
        const file = join(dir, 'grubenv');
        await writeGrubEnv(file, env({ ORDER: 'A B' }));
        assert.equal((await readGrubEnv(file))?.get('ORDER'), 'A B');
      }));
  });

  describe('when an existing file is rewritten', () => {
    // GRUB reads without replaying the journal: a rename could leave it the old directory entry.
    it('keeps the same inode and size (written in place, as save_env does)', () =>
      withDir(async (dir) => {
        const file = join(dir, 'grubenv');
        await writeGrubEnv(file, env({ ORDER: 'A B' }));
        const before = await stat(file);
        await writeGrubEnv(file, env({ ORDER: 'B A', B_OK: '0' }));
        const after = await stat(file);
        assert.equal(after.ino, before.ino);
        assert.equal(after.size, GRUB_ENV_SIZE);
        assert.equal((await readGrubEnv(file))?.get('ORDER'), 'B A');
      }));
  });
});
