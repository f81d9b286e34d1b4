import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isFerryError } from '@ferry/core';
import { needs, tempDir } from '@ferry/testing';
import type { DeployBootEntry } from './deploy-boot.ts';
import {
  grubMarkGood,
  grubSetDefault,
  readGrubDeployments,
  renderGrubDeployments,
  writeGrubDeployments,
} from './deploy-boot-grub.ts';
import { writeBootEntry } from './deploy-boot.ts';

const GOLDEN = new URL('../../../contrib/grub/ferry-deployments.cfg', import.meta.url);
const D1 = '1-0123456789ab';
const D2 = '2-abcdef012345';

const entry = (id: string, version: string, hash: string): DeployBootEntry => ({
  id,
  file: `ferry-${id}.conf`,
  title: `Ferry ${version} (${id})`,
  rank: 0,
  linux: `/ferry/vmlinuz-6.1.0-13-amd64-${hash.repeat(32)}`,
  initrd: `/ferry/initrd-6.1.0-13-amd64-${hash.repeat(32)}`,
  options: `root=PARTLABEL=data ferry.deployment=${id} console=ttyS0 panic=10`,
});
/** The example in contrib/grub: regenerate with FERRY_UPDATE_GOLDEN=1. */
const EXAMPLE = [entry(D2, "2.0.0 'beta'", 'b'), entry(D1, '1.0.0', 'a')];

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const t = await tempDir();
  try {
    await fn(t.dir);
  } finally {
    await t.cleanup();
  }
}

const editenvList = (path: string): string[] =>
  execFileSync('grub-editenv', [path, 'list'], { encoding: 'latin1' })
    .trim()
    .split('\n')
    .filter((l) => l !== '');

describe('deploy-boot-grub', () => {
  describe('when the menu fragment is rendered', () => {
    it('matches contrib/grub/ferry-deployments.cfg', async () => {
      const text = renderGrubDeployments(EXAMPLE, { bootPath: '(hd0,gpt2)' });
      if (process.env.FERRY_UPDATE_GOLDEN === '1') await writeFile(GOLDEN, text);
      assert.equal(await readFile(GOLDEN, 'utf8'), text);
    });

    it('is valid GRUB script', needs('grub-script-check'), () =>
      withDir(async (dir) => {
        const path = join(dir, 'ferry-deployments.cfg');
        await writeFile(path, renderGrubDeployments(EXAMPLE));
        execFileSync('grub-script-check', [path]);
        execFileSync('grub-script-check', [GOLDEN.pathname]);
      }),
    );

    it(
      'is caught by grub-script-check when broken (the check can fail)',
      needs('grub-script-check'),
      () =>
        withDir(async (dir) => {
          const path = join(dir, 'broken.cfg');
          await writeFile(path, renderGrubDeployments(EXAMPLE).replace(/\nfi\n/, '\n'));
          assert.throws(() => execFileSync('grub-script-check', [path], { stdio: 'ignore' }));
        }),
    );

    it('quotes titles and kernel arguments and counts each deployment down from 9', () => {
      const text = renderGrubDeployments(EXAMPLE);
      assert.ok(text.includes(`menuentry 'Ferry 2.0.0 '\\''beta'\\'' (${D2})' --id ferry-${D2} {`));
      assert.ok(text.includes(`'ferry.deployment=${D1}' 'console=ttyS0'`));
      assert.ok(
        text.includes(
          'elif [ "$ferry_2_left" = "9" ]; then set ferry_2_left=8; set ferry_boot=2-abcdef012345',
        ),
      );
      assert.ok(text.includes('load_env ferry_default ferry_previous ferry_2_left ferry_1_left\n'));
    });

    it('refuses a boot path GRUB would parse as script', () => {
      assert.throws(
        () => renderGrubDeployments(EXAMPLE, { bootPath: '/boot; reboot' }),
        (e) => isFerryError(e, 'CONFIG_INVALID'),
      );
    });
  });

  describe('when written from the boot entries', () => {
    it('lists every entry in boot order', () =>
      withDir(async (dir) => {
        const boot = join(dir, 'boot');
        await mkdir(join(boot, 'loader/entries'), { recursive: true });
        await mkdir(join(boot, 'grub'));
        const path = join(dir, 'dep');
        await mkdir(join(path, 'boot'), { recursive: true });
        await writeFile(join(path, 'boot/vmlinuz-6.1.0-13-amd64'), 'k');
        await writeFile(join(path, 'boot/initrd.img-6.1.0-13-amd64'), 'i');
        for (const id of [D1, D2])
          await writeBootEntry({
            bootDir: boot,
            root: '/dev/vda5',
            deployment: { id, version: id, path },
          });
        const cfg = await readFile(await writeGrubDeployments(boot, { bootPath: '/boot' }), 'utf8');
        const ids = [
          ...cfg.matchAll(/--id (ferry-\S+) \{\n {4}linux \/boot\/ferry\/vmlinuz-/g),
        ].map((m) => m[1]);
        assert.deepEqual(ids, [`ferry-${D2}`, `ferry-${D1}`]);
      }));
  });

  describe('when the default is set in the environment block', () => {
    it('writes the variables grub-editenv lists, capped at 9 attempts', needs('grub-editenv'), () =>
      withDir(async (dir) => {
        const env = join(dir, 'grubenv');
        execFileSync('grub-editenv', [env, 'create']);
        execFileSync('grub-editenv', [env, 'set', 'saved_entry=0']);
        await grubSetDefault(env, D1);
        await grubSetDefault(env, D2, 12);
        assert.deepEqual(editenvList(env), [
          'saved_entry=0',
          `ferry_default=${D2}`,
          `ferry_previous=${D1}`,
          'ferry_2_left=9',
        ]);
        assert.deepEqual(await readGrubDeployments(env), {
          default: D2,
          previous: D1,
          left: new Map([[D2, 9]]),
        });
      }),
    );

    it('drops the counter when marked good', needs('grub-editenv'), () =>
      withDir(async (dir) => {
        const env = join(dir, 'grubenv');
        await grubSetDefault(env, D1);
        await grubSetDefault(env, D2, 3);
        await grubMarkGood(env, D2);
        assert.deepEqual(editenvList(env), [`ferry_default=${D2}`, `ferry_previous=${D1}`]);
      }),
    );

    it('forgets counters of deployments that are neither default nor previous', () =>
      withDir(async (dir) => {
        const env = join(dir, 'grubenv');
        await grubSetDefault(env, D1, 2);
        await grubSetDefault(env, D2, 2);
        await grubSetDefault(env, '3-00000000000f', 2);
        const s = await readGrubDeployments(env);
        assert.deepEqual(
          [s.default, s.previous, [...s.left.keys()]],
          ['3-00000000000f', D2, ['3-00000000000f', D2]],
        );
      }));

    it('refuses a malformed id with DEPLOY_NOT_FOUND', () =>
      withDir(async (dir) => {
        await assert.rejects(grubSetDefault(join(dir, 'grubenv'), 'x y'), (e) =>
          isFerryError(e, 'DEPLOY_NOT_FOUND'),
        );
      }));
  });
});
