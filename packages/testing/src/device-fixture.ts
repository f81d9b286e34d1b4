/**
 * A file-backed device for component tests: a system root in a temp dir holding a real GPT disk
 * image (made by sfdisk) whose partitions are the slots, /etc/ferry/system.toml, a keyring, a
 * kernel command line naming the booted slot, and a signing key for making bundles.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, copyFile, mkdir, open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createBundle, generateKeyPair, parsePrivateKey, type PrivateKey } from '@ferry/core';
import { tempDir } from './fixtures.ts';

export interface Partition {
  name: string;
  offset: number;
  size: number;
}

export interface DeviceFixture {
  root: string;
  disk: string;
  partitions: Record<string, Partition>;
  key: PrivateKey;
  configPath: string;
  /** Sets the kernel command line's ferry.slot= (what the bootloader booted). */
  boot(bootname: string): Promise<void>;
  /** SHA-256 of a partition's bytes (or of the whole disk). */
  digest(partition?: string): Promise<string>;
  /** Makes a signed bundle from an image file. */
  bundle(
    image: string,
    opts: { version: string; counter: number; compatible?: string; out?: string; key?: PrivateKey },
  ): Promise<string>;
  /** Writes an executable health check. */
  healthCheck(name: string, script: string): Promise<void>;
  /**
   * Makes this device trust what another fixture signs: its bundle key (as keyring/work.pub)
   * and, with `repository`, that TUF repository's first root (as repository-root.json).
   */
  trust(signer: DeviceFixture, repository?: string): Promise<void>;
  cleanup(): Promise<void>;
}

export interface DeviceFixtureOptions {
  /** Slot partition size in MiB (default 8). */
  slotMiB?: number;
  compatible?: string;
  bootloader?: 'file';
  /** Extra TOML appended to system.toml. */
  extraToml?: string;
  /** Directory the device's temp root goes under (default the OS temp dir). */
  parentDir?: string;
}

/** GPT partitions of an image file, as sfdisk reports them. */
export function readPartitions(disk: string): Record<string, Partition> {
  const r = spawnSync('sfdisk', ['-J', disk], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`sfdisk -J failed: ${r.stderr}`);
  const table = (
    JSON.parse(r.stdout) as {
      partitiontable: {
        sectorsize?: number;
        partitions: Array<{ name: string; start: number; size: number }>;
      };
    }
  ).partitiontable;
  const sector = table.sectorsize ?? 512;
  return Object.fromEntries(
    table.partitions.map((p) => [
      p.name,
      { name: p.name, offset: p.start * sector, size: p.size * sector },
    ]),
  );
}

/** Creates the device: GPT disk with rootA, rootB and data partitions, booted from A. */
export async function makeDevice(opts: DeviceFixtureOptions = {}): Promise<DeviceFixture> {
  const { dir: root, cleanup } = await tempDir('ferry-device-', opts.parentDir);
  const mib = opts.slotMiB ?? 8;
  for (const d of [
    'etc/ferry/keyring',
    'etc/ferry/health.d',
    'var/lib/ferry',
    'proc',
    'dev',
    'boot',
  ])
    await mkdir(join(root, d), { recursive: true });
  const disk = join(root, 'dev', 'disk.img');
  const fh = await open(disk, 'w');
  await fh.truncate((2 * mib + 4 + 2) * 1024 * 1024);
  await fh.close();
  const layout = `label: gpt\nsize=${mib}MiB, name=rootA\nsize=${mib}MiB, name=rootB\nsize=4MiB, name=data\n`;
  const r = spawnSync('sfdisk', ['--quiet', disk], { input: layout, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`sfdisk failed: ${r.stderr}`);
  const partitions = readPartitions(disk);
  const kp = generateKeyPair();
  const key = parsePrivateKey(kp.privateKeyPem);
  await writeFile(join(root, 'etc/ferry/keyring/release.pub'), kp.publicKeyPem);
  const compatible = opts.compatible ?? 'test-board';
  const slot = (name: string, p: Partition, bootname: string) =>
    `[slot.rootfs.${name}]\ndevice = "/dev/disk.img"\noffset = ${p.offset}\nsize = ${p.size}\nbootname = "${bootname}"\n`;
  const configPath = join(root, 'etc/ferry/system.toml');
  await writeFile(
    configPath,
    `[system]\ncompatible = "${compatible}"\nbootloader = "file"\n\n[bootloader.file]\npath = "/boot/ferry-boot.json"\n\n[health]\ntimeout = 5\n\n${slot('0', partitions.rootA!, 'A')}\n${slot('1', partitions.rootB!, 'B')}\n${opts.extraToml ?? ''}`,
  );
  await writeFile(join(root, 'proc/cmdline'), 'console=ttyS0 ferry.slot=A quiet\n');
  const fixture: DeviceFixture = {
    root,
    disk,
    partitions,
    key,
    configPath,
    boot: (bootname) =>
      writeFile(join(root, 'proc/cmdline'), `console=ttyS0 ferry.slot=${bootname} quiet\n`),
    async digest(partition) {
      const all = await readFile(disk);
      const p = partition ? partitions[partition]! : { offset: 0, size: all.length };
      return createHash('sha256')
        .update(all.subarray(p.offset, p.offset + p.size))
        .digest('hex');
    },
    async bundle(image, b) {
      const out = b.out ?? join(root, `release-${b.version}.fbd`);
      await createBundle({
        images: [{ name: 'rootfs', path: image }],
        compatible: b.compatible ?? compatible,
        version: b.version,
        releaseCounter: b.counter,
        keys: [b.key ?? key],
        out,
        created: '2026-01-01T00:00:00Z',
      });
      return out;
    },
    async healthCheck(name, script) {
      const p = join(root, 'etc/ferry/health.d', name);
      await writeFile(p, `#!/bin/sh\n${script}\n`);
      await chmod(p, 0o755);
    },
    async trust(signer, repository) {
      if (repository)
        await copyFile(
          join(repository, 'metadata', '1.root.json'),
          join(root, 'etc/ferry/repository-root.json'),
        );
      await copyFile(
        join(signer.root, 'etc/ferry/keyring/release.pub'),
        join(root, 'etc/ferry/keyring/work.pub'),
      );
    },
    cleanup,
  };
  return fixture;
}
