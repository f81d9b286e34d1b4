import { afterEach, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { isFerryError } from '@ferry/core';
import { needs, tempDir } from '@ferry/testing';
import { detectBootedSlot, parseCmdline } from './booted.ts';
import { parseConfig, type SystemConfig } from './config.ts';

const TOML = `
[system]
compatible = "acme"
bootloader = "file"

[slot.rootfs.0]
device = "/dev/vda3"
bootname = "A"

[slot.rootfs.1]
device = "/dev/vda4"
bootname = "B"

[slot.boot.0]
device = "/dev/vda1"
parent = "rootfs.0"
`;

const unknown = (e: unknown) => isFerryError(e, 'BOOTLOADER_SLOT_UNKNOWN');

describe('parseCmdline', () => {
  describe('when values are quoted or repeated', () => {
    it('removes quotes, keeps quoted spaces and lets the last key win', () => {
      const a = parseCmdline('root=/dev/vda3 ferry.slot=A quiet "x=a b" y="c d" ferry.slot="B"\n');
      assert.equal(a.get('ferry.slot'), 'B');
      assert.equal(a.get('x'), 'a b');
      assert.equal(a.get('y'), 'c d');
      assert.equal(a.get('quiet'), '');
      assert.equal(a.get('root'), '/dev/vda3');
    });
    it('keeps = inside a value and stops at --', () => {
      const a = parseCmdline('root=PARTLABEL=rootfs-a -- ferry.slot=B');
      assert.equal(a.get('root'), 'PARTLABEL=rootfs-a');
      assert.equal(a.has('ferry.slot'), false);
    });
  });
});

describe('detectBootedSlot', () => {
  let root = '';
  let cleanup = async () => {};
  let c: SystemConfig;
  const put = async (rel: string, text: string) => {
    await mkdir(dirname(join(root, rel)), { recursive: true });
    await writeFile(join(root, rel), text);
  };
  const detect = (env: Record<string, string> = {}) => detectBootedSlot(c, { env });
  const names = async (env: Record<string, string> = {}) => {
    const r = await detect(env);
    return r && [r.slot.name, r.source];
  };
  beforeEach(async () => {
    ({ dir: root, cleanup } = await tempDir('ferry-booted-'));
    c = parseConfig(TOML, { root });
  });
  afterEach(() => cleanup());

  describe('when FERRY_BOOTED_SLOT is set', () => {
    it('takes a bootname or a slot name, before the command line', async () => {
      await put('proc/cmdline', 'ferry.slot=A\n');
      assert.deepEqual(await names({ FERRY_BOOTED_SLOT: 'B' }), ['rootfs.1', 'env']);
      assert.deepEqual(await names({ FERRY_BOOTED_SLOT: 'rootfs.1' }), ['rootfs.1', 'env']);
    });
    it('refuses a name that is no bootable slot', async () => {
      await assert.rejects(detect({ FERRY_BOOTED_SLOT: 'C' }), unknown);
      await assert.rejects(detect({ FERRY_BOOTED_SLOT: 'boot.0' }), unknown);
    });
  });

  describe('when the command line has ferry.slot', () => {
    it('takes it before rauc.slot and root=', async () => {
      await put('proc/cmdline', 'root=/dev/vda3 rauc.slot=A ferry.slot="B"\n');
      assert.deepEqual(await names(), ['rootfs.1', 'cmdline']);
    });
    it('takes the last of repeated keys', async () => {
      await put('proc/cmdline', 'ferry.slot=B ferry.slot=rootfs.0\n');
      assert.deepEqual(await names(), ['rootfs.0', 'cmdline']);
    });
    it('refuses an unknown bootname rather than falling through', async () => {
      await put('proc/cmdline', 'root=/dev/vda3 ferry.slot=C\n');
      await assert.rejects(detect(), unknown);
    });
  });

  describe('when the command line has rauc.slot', () => {
    it('takes a bootname before root=', async () => {
      await put('proc/cmdline', 'root=/dev/vda4 rauc.slot=A\n');
      assert.deepEqual(await names(), ['rootfs.0', 'rauc-cmdline']);
    });
    it('refuses a slot name, as RAUC knows only bootnames', async () => {
      await put('proc/cmdline', 'rauc.slot=rootfs.0\n');
      await assert.rejects(detect(), unknown);
    });
  });

  describe('when only root= names the device', () => {
    it('matches a /dev path', async () => {
      await put('proc/cmdline', 'quiet root=/dev/vda4 rw\n');
      assert.deepEqual(await names(), ['rootfs.1', 'root-device']);
    });
    it('follows PARTLABEL= through /dev/disk/by-partlabel', async () => {
      await put('dev/vda3', '');
      await put('dev/vda4', '');
      await mkdir(join(root, 'dev/disk/by-partlabel'), { recursive: true });
      await symlink('../../vda3', join(root, 'dev/disk/by-partlabel/rootfs-a'));
      await put('proc/cmdline', 'root=PARTLABEL=rootfs-a\n');
      assert.deepEqual(await names(), ['rootfs.0', 'root-device']);
    });
    it('gives no answer for a device that is no bootable slot', async () => {
      await put('proc/cmdline', 'root=/dev/vda1\n');
      assert.equal(await detect(), undefined);
    });
    it('gives no answer when two slots share the device', async () => {
      c = parseConfig(
        TOML.replace('/dev/vda3"', '/disk.img"\nsize = 1024').replace(
          '/dev/vda4"',
          '/disk.img"\noffset = 1024',
        ),
        { root },
      );
      await put('proc/cmdline', 'root=/disk.img\n');
      assert.equal(await detect(), undefined);
    });
  });

  describe('when nothing identifies a slot', () => {
    it('gives no answer without /proc at all', async () => {
      assert.equal(await detect(), undefined);
    });
  });

  describe('when only the mounted root identifies the device', () => {
    const mknod = (rel: string, major: number, minor: number) => {
      const r = spawnSync('mknod', [join(root, rel), 'b', String(major), String(minor)]);
      assert.equal(r.status, 0, r.stderr.toString());
    };
    const mountinfo = (dev: string) =>
      put(
        'proc/self/mountinfo',
        `21 1 0:20 / /proc rw - proc proc rw\n22 1 ${dev} / / ro,relatime - squashfs /dev/root ro\n`,
      );

    it(
      'matches the device number of / against the slot devices',
      needs('root', 'mknod'),
      async () => {
        await mkdir(join(root, 'dev'));
        mknod('dev/vda3', 252, 3);
        mknod('dev/vda4', 252, 4);
        await put('proc/cmdline', 'root=/dev/root\n');
        await mountinfo('252:4');
        assert.deepEqual(await names(), ['rootfs.1', 'root-device']);
      },
    );

    it('follows a dm-verity device down to its slot', needs('root', 'mknod'), async () => {
      await mkdir(join(root, 'dev'));
      mknod('dev/vda3', 252, 3);
      mknod('dev/vda4', 252, 4);
      await mountinfo('253:0');
      await put('sys/dev/block/253:0/slaves/vda3/dev', '252:3\n');
      assert.deepEqual(await names(), ['rootfs.0', 'root-device']);
    });

    it('gives no answer for an overlay root', needs('root', 'mknod'), async () => {
      await mkdir(join(root, 'dev'));
      mknod('dev/vda3', 252, 3);
      await mountinfo('0:33');
      assert.equal(await detect(), undefined);
    });
  });
});
