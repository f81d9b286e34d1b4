import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isFerryError } from '@ferry/core';
import { bootloaderConformance, tempDir } from '@ferry/testing';
import { CustomBootloader } from './bootloader-custom.ts';
import { runBootTool } from './bootloader-tool.ts';

const example = fileURLToPath(
  new URL('../../../contrib/custom-backend/example.sh', import.meta.url),
);

function make(root: string, options: Record<string, unknown>) {
  return new CustomBootloader({ root, bootnames: ['A', 'B'], options, attempts: 3 });
}

bootloaderConformance({
  name: 'custom (contrib/custom-backend/example.sh)',
  reportsAttempts: true,
  async make() {
    const { dir, cleanup } = await tempDir('ferry-bl-custom-');
    // The root holds a link to the script and its state file; Ferry passes FERRY_ROOT=<root>.
    await symlink(example, join(dir, 'backend'));
    const env = { FERRY_ROOT: dir, FERRY_BOOTNAMES: 'A B' };
    return {
      bootloader: make(dir, { path: '/backend' }),
      async boot() {
        const out = (await runBootTool(example, ['boot'], { env })).trim();
        return out === '' ? undefined : out;
      },
      reopen: () => Promise.resolve(make(dir, { path: '/backend' })),
      cleanup,
    };
  },
});

describe('custom bootloader', () => {
  describe('when configured with unknown keys or a relative path', () => {
    it('refuses with CONFIG_INVALID', () => {
      assert.throws(
        () => make('/', { path: example, colour: 'red' }),
        (e) => isFerryError(e, 'CONFIG_INVALID'),
      );
      assert.throws(
        () => make('/', { path: 'boot.sh' }),
        (e) => isFerryError(e, 'CONFIG_INVALID'),
      );
    });
  });

  describe('when the script fails', () => {
    it('reports BOOTLOADER_FAILED with its last stderr line', async () => {
      const { dir, cleanup } = await tempDir('ferry-bl-custom-');
      try {
        await writeFile(
          join(dir, 'fail'),
          '#!/bin/sh\necho first >&2\necho "no env storage" >&2\nexit 3\n',
        );
        await chmod(join(dir, 'fail'), 0o755);
        await assert.rejects(make(dir, { path: '/fail' }).getPrimary(), (e) => {
          assert.ok(isFerryError(e, 'BOOTLOADER_FAILED'));
          assert.match(e.message, /no env storage$/);
          return true;
        });
      } finally {
        await cleanup();
      }
    });
  });

  describe('when the script hangs or floods stdout', () => {
    it('kills it and reports BOOTLOADER_FAILED', async () => {
      const { dir, cleanup } = await tempDir('ferry-bl-custom-');
      try {
        await writeFile(join(dir, 'hang'), '#!/bin/sh\nsleep 30\n');
        await writeFile(join(dir, 'flood'), '#!/bin/sh\nyes good\n');
        await chmod(join(dir, 'hang'), 0o755);
        await chmod(join(dir, 'flood'), 0o755);
        await assert.rejects(runBootTool(join(dir, 'hang'), [], { timeoutMs: 200 }), (e) =>
          isFerryError(e, 'BOOTLOADER_FAILED'),
        );
        await assert.rejects(make(dir, { path: '/flood' }).getState('A'), (e) =>
          isFerryError(e, 'BOOTLOADER_FAILED'),
        );
      } finally {
        await cleanup();
      }
    });
  });

  describe('when the script answers nonsense', () => {
    it('refuses a state that is not good or bad, and a bootname that is not configured', async () => {
      const { dir, cleanup } = await tempDir('ferry-bl-custom-');
      try {
        await writeFile(
          join(dir, 'odd'),
          '#!/bin/sh\ncase "$1" in get-state) echo maybe;; *) echo Z;; esac\n',
        );
        await chmod(join(dir, 'odd'), 0o755);
        const bl = make(dir, { path: '/odd' });
        await assert.rejects(bl.getState('A'), (e) => isFerryError(e, 'BOOTLOADER_STATE_INVALID'));
        await assert.rejects(bl.getPrimary(), (e) => isFerryError(e, 'BOOTLOADER_STATE_INVALID'));
      } finally {
        await cleanup();
      }
    });
  });

  describe('when set-primary is called', () => {
    it('passes the RAUC argv and the attempts in FERRY_BOOT_ATTEMPTS', async () => {
      const { dir, cleanup } = await tempDir('ferry-bl-custom-');
      try {
        await writeFile(
          join(dir, 'rec'),
          `#!/bin/sh\necho "$* $FERRY_BOOT_ATTEMPTS" >> '${dir}/calls'\n`,
        );
        await chmod(join(dir, 'rec'), 0o755);
        const bl = make(dir, { path: '/rec' });
        await bl.setPrimary('B', 5);
        await bl.setState('B', 'good');
        assert.equal(
          await readFile(join(dir, 'calls'), 'utf8'),
          'set-primary B 5\nset-state B good 3\n',
        );
      } finally {
        await cleanup();
      }
    });
  });

  describe('when the example script has booted a slot', () => {
    it('reports it through get-current', async () => {
      const { dir, cleanup } = await tempDir('ferry-bl-custom-');
      try {
        const env = { FERRY_ROOT: dir, FERRY_BOOTNAMES: 'A B' };
        await symlink(example, join(dir, 'be'));
        const bl = make(dir, { path: '/be' });
        assert.equal(await bl.getCurrent(), undefined);
        await bl.setPrimary('B', 2);
        await runBootTool(example, ['boot'], { env });
        assert.equal(await bl.getCurrent(), 'B');
        assert.deepEqual(await bl.getState('B'), { state: 'good', attemptsLeft: 1 });
      } finally {
        await cleanup();
      }
    });
  });
});
