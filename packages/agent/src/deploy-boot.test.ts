import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, rename, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isFerryError } from '@ferry/core';
import { tempDir } from '@ferry/testing';
import {
  blessEntry,
  bootedDeployment,
  listBootEntries,
  removeBootEntry,
  setDefaultEntry,
  writeBootEntry,
} from './deploy-boot.ts';
import { systemdBootBoot } from './fixtures/systemd-boot.ts';

const D1 = '1-0123456789ab';
const D2 = '2-abcdef012345';
const D3 = '3-00000000000f';

/** A deployment tree with a Debian /boot (or usr/lib/modules) kernel and initramfs. */
async function deployment(
  root: string,
  id: string,
  o: { kernel?: string; layout?: 'debian' | 'modules' } = {},
) {
  const path = join(root, 'deployments', id);
  const kernel = o.kernel ?? 'kernel A';
  if ((o.layout ?? 'debian') === 'debian') {
    await mkdir(join(path, 'boot'), { recursive: true });
    await writeFile(join(path, 'boot/vmlinuz-6.1.0-9-amd64'), 'old kernel');
    await writeFile(join(path, 'boot/initrd.img-6.1.0-9-amd64'), 'old initrd');
    await writeFile(join(path, 'boot/vmlinuz-6.1.0-10-amd64'), kernel);
    await writeFile(join(path, 'boot/initrd.img-6.1.0-10-amd64'), `initrd of ${kernel}`);
  } else {
    await mkdir(join(path, 'usr/lib/modules/6.8.0'), { recursive: true });
    await writeFile(join(path, 'usr/lib/modules/6.8.0/vmlinuz'), kernel);
    await writeFile(join(path, 'usr/lib/modules/6.8.0/initramfs.img'), `initrd of ${kernel}`);
  }
  return path;
}

async function withBoot(fn: (root: string, boot: string) => Promise<void>): Promise<void> {
  const t = await tempDir();
  try {
    const boot = join(t.dir, 'boot');
    await mkdir(join(boot, 'loader/entries'), { recursive: true });
    await fn(t.dir, boot);
  } finally {
    await t.cleanup();
  }
}

async function write(root: string, boot: string, id: string, tries?: number, kernel?: string) {
  const path = await deployment(root, id, kernel ? { kernel } : {});
  return writeBootEntry({
    bootDir: boot,
    root: 'PARTLABEL=data',
    kernelArgs: ['console=ttyS0', 'panic=10'],
    deployment: { id, version: `${id[0]}.0.0`, path },
    ...(tries !== undefined ? { tries } : {}),
  });
}

const entryFiles = async (boot: string) => (await readdir(join(boot, 'loader/entries'))).sort();

describe('deploy-boot', () => {
  describe('when an entry is written for a Debian deployment', () => {
    it('names it ferry-<id>+<tries>.conf and copies the newest kernel', () =>
      withBoot(async (root, boot) => {
        const e = await write(root, boot, D1, 3);
        assert.deepEqual(await entryFiles(boot), [`ferry-${D1}+3.conf`]);
        const text = await readFile(join(boot, 'loader/entries', e.file), 'utf8');
        const lines = text.trim().split('\n');
        assert.deepEqual(lines.slice(0, 3), [
          `title Ferry 1.0.0 (${D1})`,
          'version 0',
          'sort-key ferry',
        ]);
        assert.match(lines[3]!, /^linux \/ferry\/vmlinuz-6\.1\.0-10-amd64-[0-9a-f]{32}$/);
        assert.match(lines[4]!, /^initrd \/ferry\/initrd-6\.1\.0-10-amd64-[0-9a-f]{32}$/);
        assert.equal(
          lines[5],
          `options root=PARTLABEL=data ferry.deployment=${D1} console=ttyS0 panic=10`,
        );
        assert.equal(await readFile(join(boot, e.linux), 'utf8'), 'kernel A');
        assert.equal(await readFile(join(boot, e.initrd), 'utf8'), 'initrd of kernel A');
      }));

    it('shares one kernel file between deployments with the same kernel', () =>
      withBoot(async (root, boot) => {
        const a = await write(root, boot, D1);
        const b = await write(root, boot, D2);
        const c = await write(root, boot, D3, undefined, 'kernel B');
        assert.equal(a.linux, b.linux);
        assert.notEqual(a.linux, c.linux);
        assert.equal((await readdir(join(boot, 'ferry'))).length, 4);
      }));
  });

  describe('when the kernel is under usr/lib/modules', () => {
    it('copies vmlinuz and initramfs.img from there', () =>
      withBoot(async (root, boot) => {
        const path = await deployment(root, D1, { layout: 'modules', kernel: 'modules kernel' });
        const e = await writeBootEntry({
          bootDir: boot,
          root: '/dev/vda5',
          deployment: { id: D1, version: '1', path },
        });
        assert.match(e.linux, /^\/ferry\/vmlinuz-6\.8\.0-/);
        assert.equal(await readFile(join(boot, e.initrd), 'utf8'), 'initrd of modules kernel');
        assert.deepEqual(await entryFiles(boot), [`ferry-${D1}.conf`]);
      }));
  });

  describe('when the deployment has no usable kernel', () => {
    const layouts: Array<[string, (p: string) => Promise<void>]> = [
      ['no /boot at all', async (p) => void (await mkdir(join(p, 'usr'), { recursive: true }))],
      [
        'a kernel without initramfs',
        async (p) => {
          await mkdir(join(p, 'boot'), { recursive: true });
          await writeFile(join(p, 'boot/vmlinuz-6.1.0-10-amd64'), 'k');
        },
      ],
      [
        'only symlinks leaving the tree',
        async (p) => {
          await mkdir(join(p, 'boot'), { recursive: true });
          await symlink('/etc/hostname', join(p, 'boot/vmlinuz-6.1.0-10-amd64'));
          await symlink('/etc/hostname', join(p, 'boot/initrd.img-6.1.0-10-amd64'));
        },
      ],
      [
        'boot as a symlink',
        async (p) => {
          await mkdir(join(p, 'real/boot'), { recursive: true });
          await writeFile(join(p, 'real/boot/vmlinuz-6.1.0-10-amd64'), 'k');
          await writeFile(join(p, 'real/boot/initrd.img-6.1.0-10-amd64'), 'i');
          await symlink('real/boot', join(p, 'boot'));
        },
      ],
    ];
    for (const [what, make] of layouts)
      it(`refuses ${what} with DEPLOY_NO_KERNEL and writes no entry`, () =>
        withBoot(async (root, boot) => {
          const path = join(root, 'deployments', D1);
          await mkdir(path, { recursive: true });
          await make(path);
          await assert.rejects(
            writeBootEntry({
              bootDir: boot,
              root: '/dev/vda5',
              deployment: { id: D1, version: '1', path },
            }),
            (e) => isFerryError(e, 'DEPLOY_NO_KERNEL'),
          );
          assert.deepEqual(await entryFiles(boot), []);
        }));
  });

  describe('when the input is malformed', () => {
    it('refuses a kernel argument with a quote or space', () =>
      withBoot(async (root, boot) => {
        const path = await deployment(root, D1);
        for (const arg of ['a"b', 'two words', "it's", 'a\\b', ''])
          await assert.rejects(
            writeBootEntry({
              bootDir: boot,
              root: '/dev/vda5',
              kernelArgs: [arg],
              deployment: { id: D1, version: '1', path },
            }),
            (e) => isFerryError(e, 'DEPLOY_BOOT_ENTRY_INVALID'),
          );
      }));

    it('refuses an id that is not a deployment id', () =>
      withBoot(async (root, boot) => {
        const path = await deployment(root, D1);
        await assert.rejects(
          writeBootEntry({
            bootDir: boot,
            root: '/dev/vda5',
            deployment: { id: '../x', version: '1', path },
          }),
          (e) => isFerryError(e, 'DEPLOY_NOT_FOUND'),
        );
      }));

    it('refuses two entry files for one deployment', () =>
      withBoot(async (root, boot) => {
        const e = await write(root, boot, D1, 3);
        await writeFile(
          join(boot, 'loader/entries', `ferry-${D1}.conf`),
          await readFile(join(boot, 'loader/entries', e.file)),
        );
        await assert.rejects(listBootEntries(boot), (x) =>
          isFerryError(x, 'DEPLOY_BOOT_ENTRY_INVALID'),
        );
      }));
  });

  describe('when entries are listed', () => {
    it('parses the counters systemd-boot left in the names', () =>
      withBoot(async (root, boot) => {
        await write(root, boot, D1);
        const e = await write(root, boot, D2, 3);
        await rename(
          join(boot, 'loader/entries', e.file),
          join(boot, 'loader/entries', `ferry-${D2}+1-2.conf`),
        );
        await writeFile(join(boot, 'loader/entries', 'debian.conf'), 'title Debian\n');
        const got = (await listBootEntries(boot)).map((x) => [x.id, x.left, x.done]);
        assert.deepEqual(got, [
          [D2, 1, 2],
          [D1, undefined, undefined],
        ]);
      }));
  });

  describe('when an entry is blessed', () => {
    it('drops the counter from the name and keeps the content', () =>
      withBoot(async (root, boot) => {
        const e = await write(root, boot, D1, 3);
        const before = await readFile(join(boot, 'loader/entries', e.file), 'utf8');
        await blessEntry(boot, D1);
        assert.deepEqual(await entryFiles(boot), [`ferry-${D1}.conf`]);
        assert.equal(
          await readFile(join(boot, 'loader/entries', `ferry-${D1}.conf`), 'utf8'),
          before,
        );
      }));

    it('refuses a deployment without entry with DEPLOY_BOOT_ENTRY_MISSING', () =>
      withBoot(async (_root, boot) => {
        await assert.rejects(blessEntry(boot, D1), (e) =>
          isFerryError(e, 'DEPLOY_BOOT_ENTRY_MISSING'),
        );
      }));
  });

  describe('when the default switches', () => {
    it('keeps loader.conf lines and sets the ferry-* glob once', () =>
      withBoot(async (root, boot) => {
        await writeFile(
          join(boot, 'loader/loader.conf'),
          'timeout 3\ndefault debian.conf\nconsole-mode max\n',
        );
        await write(root, boot, D1);
        await setDefaultEntry(boot, D1);
        assert.equal(
          await readFile(join(boot, 'loader/loader.conf'), 'utf8'),
          'timeout 3\ndefault ferry-*\nconsole-mode max\n',
        );
        assert.deepEqual(await readdir(join(boot, 'loader')), ['entries', 'loader.conf']);
      }));

    it('boots the new default while it has tries, then falls back to the old one', () =>
      withBoot(async (root, boot) => {
        await write(root, boot, D1);
        await setDefaultEntry(boot, D1);
        await write(root, boot, D2, 2);
        // Writing an entry changes nothing: D1 still boots.
        assert.equal(await systemdBootBoot(boot), `ferry-${D1}.conf`);
        await setDefaultEntry(boot, D2);
        assert.equal((await listBootEntries(boot))[0]!.id, D2);
        assert.deepEqual(await entryFiles(boot), [`ferry-${D1}.conf`, `ferry-${D2}+2.conf`]);
        assert.equal(await systemdBootBoot(boot), `ferry-${D2}+1-1.conf`);
        assert.equal(await systemdBootBoot(boot), `ferry-${D2}+0-2.conf`);
        assert.equal(await systemdBootBoot(boot), `ferry-${D1}.conf`);
        assert.equal((await listBootEntries(boot))[0]!.id, D1);
      }));

    it('keeps a blessed default for good', () =>
      withBoot(async (root, boot) => {
        await write(root, boot, D1);
        await setDefaultEntry(boot, D1);
        await write(root, boot, D2, 1);
        await setDefaultEntry(boot, D2);
        assert.equal(await systemdBootBoot(boot), `ferry-${D2}+0-1.conf`);
        await blessEntry(boot, D2);
        for (let i = 0; i < 3; i++) assert.equal(await systemdBootBoot(boot), `ferry-${D2}.conf`);
      }));

    it('can go back to an older deployment', () =>
      withBoot(async (root, boot) => {
        for (const id of [D1, D2]) {
          await write(root, boot, id);
          await setDefaultEntry(boot, id);
        }
        await setDefaultEntry(boot, D1);
        assert.equal(await systemdBootBoot(boot), `ferry-${D1}.conf`);
      }));
  });

  describe('when an entry is removed', () => {
    it('deletes it and the kernel files no other entry uses', () =>
      withBoot(async (root, boot) => {
        const a = await write(root, boot, D1);
        await write(root, boot, D2);
        const c = await write(root, boot, D3, 3, 'kernel B');
        await removeBootEntry(boot, D3);
        assert.deepEqual(await entryFiles(boot), [`ferry-${D1}.conf`, `ferry-${D2}.conf`]);
        assert.deepEqual(
          (await readdir(join(boot, 'ferry'))).sort(),
          [a.initrd.slice(7), a.linux.slice(7)].sort(),
        );
        await removeBootEntry(boot, D1);
        assert.equal(await readFile(join(boot, a.linux), 'utf8'), 'kernel A');
        assert.notEqual(c.linux, a.linux);
      }));
  });

  describe('when the booted deployment is read from the command line', () => {
    it('returns the ferry.deployment id', () => {
      assert.equal(
        bootedDeployment(`BOOT_IMAGE=/ferry/x root=PARTLABEL=data ferry.deployment=${D2} quiet\n`),
        D2,
      );
    });

    it('returns undefined without one', () => {
      assert.equal(bootedDeployment('root=/dev/vda3 ro ferry.slot=A'), undefined);
    });

    it('refuses a malformed id with DEPLOY_NOT_FOUND', () => {
      assert.throws(
        () => bootedDeployment('ferry.deployment=../../x'),
        (e) => isFerryError(e, 'DEPLOY_NOT_FOUND'),
      );
    });
  });
});
