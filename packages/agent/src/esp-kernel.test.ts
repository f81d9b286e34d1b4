/**
 * Slot kernels on the ESP for systemd-boot: `ferry install` on a file-backed device (real GPT
 * disk, real squashfs images mounted read-only through a loop device at the slot's offset)
 * copies the new slot's kernel and initramfs onto a fake ESP, writes its entry and prunes what no
 * entry refers to; killed at every step, the booted slot's entry and files stay intact.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isFerryError } from '@ferry/core';
import { makeDevice, needs, type DeviceFixture } from '@ferry/testing';
import { Agent } from './agent.ts';
import { LOADER_GUID, SystemdBootBootloader } from './bootloader-systemd-boot.ts';
import { ESP_FAULT_POINTS } from './fault.ts';

const caps = needs('root', 'loop', 'mksquashfs', 'sfdisk');
const ferry = join(import.meta.dirname, '..', '..', 'cli', 'bin', 'ferry');
const OPTIONS = { A: 'root=PARTLABEL=a ferry.slot=A', B: 'root=PARTLABEL=b ferry.slot=B' };
const SD_TOML = `
[bootloader.systemd-boot]
esp = "/boot"

[bootloader.systemd-boot.kernel-options]
A = "${OPTIONS.A}"
B = "${OPTIONS.B}"
`;

let dev: DeviceFixture;
const bundles: Record<string, string> = {};

const hex = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, 32);
const esp = () => join(dev.root, 'boot');
const entries = async () =>
  (await readdir(join(esp(), 'loader/entries'))).filter((f) => !f.startsWith('.')).sort();
const kernels = async () => (await readdir(join(esp(), 'ferry'))).sort();
const bootloader = async () =>
  (await Agent.open({ root: dev.root })).bootloader as SystemdBootBootloader;

/** A squashfs root holding boot/vmlinuz and boot/initrd.img with these contents. */
async function image(name: string, kernel: string, initrd: string, link = false): Promise<string> {
  const tree = join(dev.root, `tree-${name}`);
  await mkdir(join(tree, 'boot'), { recursive: true });
  await mkdir(join(tree, 'etc'), { recursive: true });
  await writeFile(join(tree, 'etc/release'), name);
  if (link) await symlink('/etc/hostname', join(tree, 'boot/vmlinuz'));
  else await writeFile(join(tree, 'boot/vmlinuz'), kernel);
  await writeFile(join(tree, 'boot/initrd.img'), initrd);
  const out = join(dev.root, `${name}.sqfs`);
  const r = spawnSync('mksquashfs', [tree, out, '-noappend', '-quiet', '-all-root']);
  assert.equal(r.status, 0, r.stderr?.toString());
  return out;
}

function install(bundle: string, env: Record<string, string> = {}) {
  return new Promise<{ code: number | null; signal: NodeJS.Signals | null; err: string }>(
    (resolve, reject) => {
      const child = spawn(ferry, ['install', '--root', dev.root, bundle], {
        env: { ...process.env, ...env },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let err = '';
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      child.on('error', reject);
      child.on('close', (code, signal) => resolve({ code, signal, err }));
    },
  );
}

before(async () => {
  if (caps.skip) return;
  dev = await makeDevice({ slotMiB: 8 });
  const toml = await readFile(dev.configPath, 'utf8');
  await writeFile(
    dev.configPath,
    toml
      .replace('bootloader = "file"', 'bootloader = "systemd-boot"')
      .replace(/\[bootloader\.file\]\npath = .*\n/, '') + SD_TOML,
  );
  await mkdir(join(esp(), 'loader/entries'), { recursive: true });
  await writeFile(join(esp(), 'loader/loader.conf'), 'timeout 0\n');
  const made: Array<[string, string, string, number, boolean?]> = [
    ['v1', 'kernel 1', 'initrd 1', 1],
    ['v2', 'kernel 1', 'initrd 2', 2],
    ['v3', 'kernel 3', 'initrd 3', 3],
    ['evil', 'x', 'initrd 4', 4, true],
  ];
  for (const [name, k, i, counter, link] of made)
    bundles[name] = await dev.bundle(await image(name, k, i, link), {
      version: `${counter}.0.0`,
      counter,
    });
});
after(() => dev?.cleanup());

describe('slot kernels on the ESP (systemd-boot)', () => {
  describe('when the first release goes into A', () => {
    it(
      'copies its kernel and initramfs and writes A+3 with the configured options',
      caps,
      async () => {
        await dev.boot('B');
        const r = await install(bundles.v1!);
        assert.equal(r.code, 0, r.err);
        assert.deepEqual(await entries(), ['ferry-A+3.conf']);
        assert.deepEqual(await kernels(), [
          `initrd-${hex('initrd 1')}`,
          `vmlinuz-${hex('kernel 1')}`,
        ]);
        const text = await readFile(join(esp(), 'loader/entries/ferry-A+3.conf'), 'utf8');
        assert.match(text, new RegExp(`^linux /ferry/vmlinuz-${hex('kernel 1')}$`, 'm'));
        assert.match(text, new RegExp(`^initrd /ferry/initrd-${hex('initrd 1')}$`, 'm'));
        assert.match(text, /^options root=PARTLABEL=a ferry\.slot=A$/m);
        assert.match(text, /^title Ferry 1\.0\.0 \(slot A\)$/m);
        assert.equal(
          await readFile(join(esp(), 'ferry', `vmlinuz-${hex('kernel 1')}`), 'utf8'),
          'kernel 1',
        );
        assert.match(
          await readFile(join(esp(), 'loader/loader.conf'), 'utf8'),
          /^default ferry-\*$/m,
        );
        const bl = await bootloader();
        assert.equal(await bl.getPrimary(), 'A');
        assert.deepEqual(await bl.getState('B'), { state: 'bad', attemptsLeft: 0 });
        // A boots (systemd-boot names the entry it picked in LoaderEntrySelected) and is blessed.
        await dev.boot('A');
        const efivars = join(dev.root, 'sys/firmware/efi/efivars');
        await mkdir(efivars, { recursive: true });
        await writeFile(
          join(efivars, `LoaderEntrySelected-${LOADER_GUID}`),
          Buffer.concat([Buffer.from([6, 0, 0, 0]), Buffer.from('ferry-a+3.conf\0', 'utf16le')]),
        );
        const status = await (await Agent.open({ root: dev.root })).status();
        assert.equal(status.bootloaderBooted, 'A');
        await bl.setState('A', 'good');
        assert.deepEqual(await entries(), ['ferry-A.conf']);
      },
    );
  });

  describe("when a release whose kernel is A's goes into B", () => {
    it('shares the kernel file, adds its initramfs and makes B primary', caps, async () => {
      const r = await install(bundles.v2!);
      assert.equal(r.code, 0, r.err);
      assert.deepEqual(await entries(), ['ferry-A.conf', 'ferry-B+3.conf']);
      assert.deepEqual(await kernels(), [
        `initrd-${hex('initrd 1')}`,
        `initrd-${hex('initrd 2')}`,
        `vmlinuz-${hex('kernel 1')}`,
      ]);
      assert.equal(await (await bootloader()).getPrimary(), 'B');
    });
  });

  describe('when B is replaced before it booted', () => {
    it("removes the files only the old B entry used, keeping A's", caps, async () => {
      const r = await install(bundles.v3!);
      assert.equal(r.code, 0, r.err);
      assert.deepEqual(await entries(), ['ferry-A.conf', 'ferry-B+3.conf']);
      assert.deepEqual(await kernels(), [
        `initrd-${hex('initrd 1')}`,
        `initrd-${hex('initrd 3')}`,
        `vmlinuz-${hex('kernel 1')}`,
        `vmlinuz-${hex('kernel 3')}`,
      ]);
    });
  });

  describe("when the image's kernel is a symlink", () => {
    it('refuses it and leaves B without a bootable entry', caps, async () => {
      const r = await install(bundles.evil!);
      assert.notEqual(r.code, 0, r.err);
      assert.match(r.err, /INSTALL_BOOT_FILES/);
      const bl = await bootloader();
      assert.equal(await bl.getPrimary(), 'A');
      assert.equal((await bl.getState('B')).state, 'bad');
      assert.ok(!(await kernels()).some((k) => k.includes(hex('x'))));
    });
  });

  describe('when the install is killed at every step of the ESP work', () => {
    it(
      "keeps A's entry and kernel files byte-identical and A primary; a re-run completes",
      caps,
      async () => {
        const aEntry = join(esp(), 'loader/entries/ferry-A.conf');
        const before = await readFile(aEntry, 'utf8');
        const aFiles = [`vmlinuz-${hex('kernel 1')}`, `initrd-${hex('initrd 1')}`];
        for (const [i, point] of ESP_FAULT_POINTS.entries()) {
          const bundle = i % 2 === 0 ? bundles.v2! : bundles.v3!;
          const r = await install(bundle, { FERRY_FAULT_AT: point });
          assert.equal(r.signal, 'SIGKILL', `${point}: reached`);
          assert.equal(await readFile(aEntry, 'utf8'), before, `${point}: A's entry`);
          for (const f of aFiles)
            assert.ok((await kernels()).includes(f), `${point}: A's ${f} is there`);
          assert.equal(
            await readFile(join(esp(), 'ferry', aFiles[0]!), 'utf8'),
            'kernel 1',
            `${point}: A's kernel`,
          );
          const bl = await bootloader();
          assert.equal(await bl.getPrimary(), 'A', `${point}: A boots next`);
          const again = await install(bundle);
          assert.equal(again.code, 0, again.err);
          assert.equal(await (await bootloader()).getPrimary(), 'B', `${point}: re-run`);
        }
      },
    );
  });

  describe('when kernel-options lacks a slot', () => {
    it('refuses the configuration', () => {
      assert.throws(
        () =>
          new SystemdBootBootloader({
            root: '/',
            bootnames: ['A', 'B'],
            options: { 'kernel-options': { A: 'x' } },
            attempts: 3,
          }),
        (e) => isFerryError(e, 'CONFIG_INVALID') && /lacks slot 'B'/.test(e.message),
      );
      assert.throws(
        () =>
          new SystemdBootBootloader({
            root: '/',
            bootnames: ['A', 'B'],
            options: { esp: '/boot' },
            attempts: 3,
          }),
        (e) => isFerryError(e, 'CONFIG_INVALID'),
      );
    });
  });
});
