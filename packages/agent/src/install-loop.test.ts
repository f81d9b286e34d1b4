/**
 * Privileged layer: the slots are real block devices. Each GPT partition of the disk image is
 * attached with `losetup -o OFFSET --sizelimit SIZE` (this kernel's `losetup -P` makes no
 * partition nodes), and its node is recreated inside the test root with mknod.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { imageLikeBytes, makeDevice, needs, type DeviceFixture } from '@ferry/testing';
import { Agent } from './agent.ts';
import { deviceSize } from './slot-device.ts';

const caps = needs('root', 'loop', 'sfdisk', 'mknod');
let dev: DeviceFixture;
const loops: string[] = [];

async function attach(partition: string, node: string): Promise<void> {
  const p = dev.partitions[partition]!;
  const loop = execFileSync(
    'losetup',
    ['-f', '--show', '-o', String(p.offset), '--sizelimit', String(p.size), dev.disk],
    { encoding: 'utf8' },
  ).trim();
  loops.push(loop);
  const rdev = (await stat(loop)).rdev;
  const major = Math.floor(rdev / 256) & 0xfff;
  const minor = (rdev & 0xff) | ((rdev >> 12) & 0xfff00);
  execFileSync('mknod', [join(dev.root, 'dev', node), 'b', String(major), String(minor)]);
}

before(async () => {
  if (caps.skip) return;
  dev = await makeDevice({ slotMiB: 8 });
  await attach('rootA', 'slotA');
  await attach('rootB', 'slotB');
  const cfg = await readFile(dev.configPath, 'utf8');
  // Block-device slots: no offset or size, the kernel's device is the slot.
  const blockCfg = cfg
    .replace(
      /\[slot\.rootfs\.0\][^[]*/,
      '[slot.rootfs.0]\ndevice = "/dev/slotA"\nbootname = "A"\n\n',
    )
    .replace(
      /\[slot\.rootfs\.1\][^[]*/,
      '[slot.rootfs.1]\ndevice = "/dev/slotB"\nbootname = "B"\n\n',
    );
  await writeFile(dev.configPath, blockCfg);
});
after(async () => {
  for (const l of loops) execFileSync('losetup', ['-d', l]);
  await dev?.cleanup();
});

describe('install into loop block devices', () => {
  it('sizes a block device from /sys', caps, async () => {
    assert.equal(await deviceSize(join(dev.root, 'dev', 'slotB')), dev.partitions.rootB!.size);
  });
  it(
    'writes the image through the block device into the right partition and nowhere else',
    caps,
    async () => {
      const image = imageLikeBytes(2 * 1024 * 1024 + 1000, 41);
      await writeFile(join(dev.root, 'v1.img'), image);
      const bundle = await dev.bundle(join(dev.root, 'v1.img'), { version: '1.0.0', counter: 1 });
      const aBefore = await dev.digest('rootA');
      const r = await (await Agent.open({ root: dev.root })).install(bundle);
      assert.equal(r.target, 'rootfs.1');
      // Read through the disk image file, not the loop device: the bytes landed at B's GPT offset.
      const disk = await readFile(dev.disk);
      const b = dev.partitions.rootB!;
      assert.ok(disk.subarray(b.offset, b.offset + image.length).equals(image));
      assert.equal(await dev.digest('rootA'), aBefore);
    },
  );
});
