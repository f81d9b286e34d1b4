import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isFerryError } from '@ferry/core';
import { bootloaderConformance, needs, tempDir } from '@ferry/testing';
import { LOADER_GUID, parseEntryName, SystemdBootBootloader } from './bootloader-systemd-boot.ts';
import { systemdBootBoot, systemdBootSelect } from './fixtures/systemd-boot.ts';

/** A provisioned ESP under <root>/boot: A and B committed, A newest, `default ferry-*`. */
async function espRoot() {
  const { dir, cleanup } = await tempDir('ferry-bl-sdboot-');
  const esp = join(dir, 'boot');
  const entries = join(esp, 'loader/entries');
  await mkdir(entries, { recursive: true });
  await writeFile(join(esp, 'loader/loader.conf'), 'timeout 3\ndefault ferry-*\n');
  for (const [b, v] of [
    ['A', 2],
    ['B', 1],
  ] as const)
    await writeFile(
      join(entries, `ferry-${b}.conf`),
      `title Ferry ${b}\nsort-key ferry\nversion ${v}\nlinux /${b}/vmlinuz\noptions root=PARTLABEL=${b} ferry.slot=${b}\n`,
    );
  const make = (options: Record<string, unknown> = {}) =>
    new SystemdBootBootloader({ root: dir, bootnames: ['A', 'B'], options, attempts: 3 });
  const efivars = join(dir, 'sys/firmware/efi/efivars');
  const boot = async () => {
    const file = await systemdBootBoot(esp, efivars);
    return file === undefined ? undefined : parseEntryName(file)!.stem.replace(/^ferry-/, '');
  };
  const files = async () => (await readdir(entries)).filter((f) => !f.startsWith('.')).sort();
  return { dir, esp, cleanup, make, boot, files };
}

bootloaderConformance({
  name: 'systemd-boot (loader fixture, checked against bootctl)',
  reportsAttempts: true,
  async make() {
    const r = await espRoot();
    return {
      bootloader: r.make(),
      boot: r.boot,
      reopen: () => Promise.resolve(r.make()),
      cleanup: r.cleanup,
    };
  },
});

/** The id real bootctl marks "(default)", on a tmpfs copy of the ESP in a private mount namespace. */
function bootctlDefault(esp: string, mnt: string): string | undefined {
  const script =
    'mount -t tmpfs none "$1" && cp -a "$2"/. "$1"/ && SYSTEMD_RELAX_ESP_CHECKS=1 bootctl --esp-path="$1" --no-variables --no-pager list';
  const r = spawnSync('unshare', ['-m', 'sh', '-c', script, 'sh', mnt, esp], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const m = /title: .*\(default\).*\n\s+id: (\S+)/.exec(r.stdout);
  return m?.[1]?.toLowerCase();
}

describe('systemd-boot bootloader', () => {
  describe('when entry names carry counters', () => {
    it('parses them as systemd-boot does, ignoring a counter in the middle', () => {
      assert.deepEqual(parseEntryName('ferry-B+2-1.conf'), { stem: 'ferry-B', left: 2, done: 1 });
      assert.deepEqual(parseEntryName('ferry-B+3.conf'), { stem: 'ferry-B', left: 3, done: 0 });
      assert.deepEqual(parseEntryName('a+b+x.conf'), { stem: 'a+b+x' });
      assert.equal(parseEntryName('.ferry-B.conf.tmp'), undefined);
    });
  });

  describe('when B is tried, then blessed', () => {
    it('renames exactly like systemd-boot and systemd-bless-boot', async () => {
      const r = await espRoot();
      try {
        const bl = r.make({
          entries: '/boot/loader/entries',
          'loader-conf': '/boot/loader/loader.conf',
        });
        await bl.setPrimary('B', 3);
        assert.deepEqual(await r.files(), ['ferry-A.conf', 'ferry-B+3.conf']);
        assert.match(
          await readFile(join(r.esp, 'loader/entries/ferry-B+3.conf'), 'utf8'),
          /^version 3$/m,
        );
        assert.equal(await r.boot(), 'B');
        assert.deepEqual(await r.files(), ['ferry-A.conf', 'ferry-B+2-1.conf']);
        assert.equal(await bl.getCurrent(), 'B');
        await bl.setState('B', 'bad');
        assert.deepEqual(await r.files(), ['ferry-A.conf', 'ferry-B+0-1.conf']);
        await bl.setPrimary('B', 2);
        await bl.setState('B', 'good');
        assert.deepEqual(await r.files(), ['ferry-A.conf', 'ferry-B.conf']);
      } finally {
        await r.cleanup();
      }
    });
  });

  describe('when loader.conf names another default', () => {
    it('setPrimary rewrites it to the prefix glob, keeping the other lines', async () => {
      const r = await espRoot();
      try {
        await writeFile(join(r.esp, 'loader/loader.conf'), 'timeout 3\ndefault ferry-A.conf\n');
        await r.make().setPrimary('B', 1);
        assert.equal(
          await readFile(join(r.esp, 'loader/loader.conf'), 'utf8'),
          'timeout 3\ndefault ferry-*\n',
        );
      } finally {
        await r.cleanup();
      }
    });
  });

  describe('when the entries are inconsistent', () => {
    it('refuses a missing entry and a slot with two entries', async () => {
      const r = await espRoot();
      try {
        await rm(join(r.esp, 'loader/entries/ferry-B.conf'));
        await assert.rejects(r.make().getState('B'), (e) =>
          isFerryError(e, 'BOOTLOADER_STATE_INVALID'),
        );
        await writeFile(join(r.esp, 'loader/entries/ferry-A+1.conf'), 'title A again\n');
        await assert.rejects(r.make().getPrimary(), (e) =>
          isFerryError(e, 'BOOTLOADER_STATE_INVALID'),
        );
      } finally {
        await r.cleanup();
      }
    });
    it('refuses unknown option keys', () => {
      assert.throws(
        () =>
          new SystemdBootBootloader({
            root: '/',
            bootnames: ['A'],
            options: { prefix: 'x' },
            attempts: 3,
          }),
        (e) => isFerryError(e, 'CONFIG_INVALID'),
      );
    });
  });

  describe('when the loader reports the selected entry', () => {
    it('maps LoaderEntrySelected (lower-cased, with counter) back to the bootname', async () => {
      const r = await espRoot();
      try {
        await mkdir(join(r.dir, 'sys/firmware/efi/efivars'), { recursive: true });
        const v = Buffer.concat([
          Buffer.from([6, 0, 0, 0]),
          Buffer.from('ferry-b+2-1.conf\0', 'utf16le'),
        ]);
        await writeFile(
          join(r.dir, `sys/firmware/efi/efivars/LoaderEntrySelected-${LOADER_GUID}`),
          v,
        );
        assert.equal(await r.make().getCurrent(), 'B');
      } finally {
        await r.cleanup();
      }
    });
  });

  describe('when compared with the real bootctl', () => {
    it(
      'the fixture picks the entry bootctl marks default, at every step',
      needs('root', 'unshare', 'bootctl'),
      async () => {
        const r = await espRoot();
        const mnt = await mkdtemp(join(tmpdir(), 'ferry-esp-'));
        try {
          const bl = r.make();
          const check = async () => {
            const mine = (await systemdBootSelect(r.esp))?.id;
            assert.equal(bootctlDefault(r.esp, mnt), mine);
            return mine;
          };
          assert.equal(await check(), 'ferry-a.conf');
          await bl.setPrimary('B', 2);
          assert.equal(await check(), 'ferry-b.conf');
          await r.boot();
          await r.boot();
          assert.equal(await check(), 'ferry-a.conf', 'B has no tries left: A is the fallback');
          await bl.setPrimary('B', 1);
          await r.boot();
          await bl.setState('B', 'good');
          assert.equal(await check(), 'ferry-b.conf');
          await bl.setState('B', 'bad');
          assert.equal(await check(), 'ferry-a.conf');
        } finally {
          await rm(mnt, { recursive: true, force: true });
          await r.cleanup();
        }
      },
    );
  });
});
