/**
 * The device half of the demo: a file-backed A/B device in a directory (two slot image files,
 * the `file` bootloader, a kernel command line), which installs the demo releases the way a
 * real device would, reboots by playing the bootloader's part, and commits after boot-check.
 */
import { copyFile, mkdir, rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Agent, type FileBootloader } from '@ferry/agent';

const SLOT_BYTES = 16 * 1024 * 1024;

/** Creates the device under `root`: system.toml, keyring, slot files, cmdline booted from A. */
export async function provisionDemoDevice(root: string, publicKey: string): Promise<void> {
  await rm(root, { recursive: true, force: true });
  for (const d of ['etc/ferry/keyring', 'etc/ferry/health.d', 'var/lib/ferry', 'proc', 'dev'])
    await mkdir(join(root, d), { recursive: true });
  for (const s of ['slot-a.img', 'slot-b.img']) {
    await writeFile(join(root, 'dev', s), '');
    await truncate(join(root, 'dev', s), SLOT_BYTES);
  }
  await copyFile(publicKey, join(root, 'etc/ferry/keyring/release.pub'));
  await writeFile(
    join(root, 'etc/ferry/system.toml'),
    [
      '[system]',
      'compatible = "ferry-demo"',
      'bootloader = "file"',
      '',
      '[bootloader.file]',
      'path = "/var/lib/ferry/boot.json"',
      '',
      '[slot.rootfs.0]',
      'device = "/dev/slot-a.img"',
      'bootname = "A"',
      '',
      '[slot.rootfs.1]',
      'device = "/dev/slot-b.img"',
      'bootname = "B"',
      '',
    ].join('\n'),
  );
  await writeFile(join(root, 'etc/ferry/health.d/10-demo'), '#!/bin/sh\ntest -n "$FERRY_SLOT"\n', {
    mode: 0o755,
  });
  await writeFile(join(root, 'proc/cmdline'), 'ferry.slot=A\n');
}

/** Plays the bootloader: picks the next slot as the file backend's model does, and "boots" it. */
export async function rebootDemoDevice(root: string): Promise<string | undefined> {
  const booted = await ((await Agent.open({ root })).bootloader as FileBootloader).boot();
  if (booted) await writeFile(join(root, 'proc/cmdline'), `ferry.slot=${booted}\n`);
  return booted;
}

export interface DeviceDemoStep {
  release: string;
  target: string;
  seededBytes: number;
  fetchedBytes: number;
  booted: string | undefined;
  check: string;
}

/** Installs each bundle in turn, reboots, runs boot-check; returns what happened. */
export async function runDeviceDemo(
  root: string,
  bundles: string[],
  say: (s: string) => void,
): Promise<DeviceDemoStep[]> {
  const steps: DeviceDemoStep[] = [];
  for (const bundle of bundles) {
    const r = await (await Agent.open({ root })).install(bundle);
    const booted = await rebootDemoDevice(root);
    const check = await (await Agent.open({ root })).bootCheck({ reboot: false });
    say(
      `   installed ${r.version} into ${r.target} (${r.seededBytes} bytes from the other slot, ${r.fetchedBytes} from the bundle), rebooted into ${booted}, boot-check: ${check.result}`,
    );
    steps.push({
      release: r.version,
      target: r.target,
      seededBytes: r.seededBytes,
      fetchedBytes: r.fetchedBytes,
      booted,
      check: check.result,
    });
  }
  return steps;
}
