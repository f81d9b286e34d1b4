/**
 * S6's disk (deployments on GRUB) and the host's view of it as a device root:
 *
 *   1 bios  1 MiB    BIOS boot partition: GRUB's core.img
 *   2 boot  64 MiB   ext4, GRUB's root: grub/grub.cfg (sources grub/ferry-deployments.cfg),
 *                    grub/grubenv, loader/entries/ferry-*.conf, ferry/vmlinuz-*, ferry/initrd-*
 *   3 data  160 MiB  ext4: var/ (the device's /var), var/lib/ferry/deploy (the store)
 *
 * Filesystems are made as files and written at their offsets (no partition nodes on these
 * hosts). To change the disk the host mounts its partitions through loop devices at their
 * offsets, as a device mounts them: boot on `<root>/boot`, data on `<root>/data` and its var/ on
 * `<root>/var`, so Ferry's own `[deploy]` config (`/var/lib/ferry/deploy`, `/boot`) applies as is.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DeviceDeployments, parseConfig } from '@ferry/agent';
import type { DiskLayout } from './disk-state.ts';
import { DEPLOY_COMPATIBLE } from './deploy-trees.ts';

const MiB = 1024 * 1024;
const GRUB_MODULES = [
  ...['biosdisk', 'part_gpt', 'ext2', 'loadenv', 'test', 'echo', 'linux', 'normal'],
  ...['configfile', 'serial', 'terminal', 'sleep', 'reboot', 'halt'],
];

/**
 * grub.cfg: serial console, no menu wait, Ferry's fragment, and two lines for the tests: the
 * choice, and the counters (`<n>=` is `ferry_<n>_left` after GRUB's decrement). Two short lines,
 * because GRUB's serial terminal wraps at 80 columns.
 */
export const DEPLOY_GRUB_CFG = `serial --unit=0 --speed=115200
terminal_input serial
terminal_output serial
set timeout=0
if [ -f $prefix/ferry-deployments.cfg ]; then source $prefix/ferry-deployments.cfg; fi
echo "FERRY-GRUB: boot=$ferry_boot def=$ferry_default prev=$ferry_previous"
echo "FERRY-GRUB-LEFT: 1=$ferry_1_left 2=$ferry_2_left 9=$ferry_9_left"
`;

/** `[deploy]` of S6's device: GRUB counting with 2 attempts (docs/config.md#deploy). */
export const DEPLOY_SYSTEM_TOML = `[system]
compatible = "${DEPLOY_COMPATIBLE}"
bootloader = "grub"

[deploy]
store = "/var/lib/ferry/deploy"
etc-conflicts = "/var/lib/ferry/etc-conflicts"
boot = "grub"
boot-dir = "/boot"
kernel-root = "PARTLABEL=data"
kernel-args = "console=ttyS0,115200 panic=5 loglevel=3"
boot-attempts = 2

# Unused: the config requires two A/B slots even on a device that only deploys.
[slot.rootfs.0]
device = "/dev/unused-a"
bootname = "A"

[slot.rootfs.1]
device = "/dev/unused-b"
bootname = "B"
`;

function sh(cmd: string, args: string[], input?: string): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...(input !== undefined ? { input } : {}) });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

function partitions(disk: string): DiskLayout {
  const t = (
    JSON.parse(sh('sfdisk', ['-J', disk])) as {
      partitiontable: { sectorsize: number; partitions: { start: number; size: number }[] };
    }
  ).partitiontable;
  const at = (i: number) => {
    const p = t.partitions[i]!;
    return { offset: p.start * t.sectorsize, size: p.size * t.sectorsize };
  };
  return { boot: at(1), data: at(2) };
}

function mkfsAt(disk: string, dir: string, file: string, part: { offset: number; size: number }) {
  const size = `${part.size / 1024}k`;
  sh('mke2fs', ['-q', '-t', 'ext4', '-E', 'root_owner=0:0', '-d', dir, file, size]);
  const seek = `seek=${part.offset / MiB}`;
  sh('dd', [`if=${file}`, `of=${disk}`, 'bs=1M', seek, 'conv=notrunc,sparse', 'status=none']);
}

/** Attaches `part` of `disk` to a loop device, mounts it on `dir`; returns the undo. */
function mountPart(disk: string, part: { offset: number; size: number }, dir: string) {
  mkdirSync(dir, { recursive: true });
  const args = ['--show', '-f', '-o', String(part.offset), '--sizelimit', String(part.size), disk];
  const loop = sh('losetup', args).trim();
  try {
    sh('mount', [loop, dir]);
  } catch (e) {
    sh('losetup', ['-d', loop]);
    throw e;
  }
  return () => {
    sh('umount', [dir]);
    sh('losetup', ['-d', loop]);
  };
}

/**
 * Creates the empty disk at `path`: GPT, the boot partition with grub.cfg, an empty grubenv
 * and GRUB in the BIOS boot partition, an empty data partition with `var/`.
 *
 * @example
 * const layout = createDeployDisk('run/disk.img');
 */
export function createDeployDisk(path: string): DiskLayout {
  const work = mkdtempSync(`${path}.work-`);
  try {
    sh('truncate', ['-s', String(256 * MiB), path]);
    const gpt = '0FC63DAF-8483-4772-8E79-3D69D8477DE4';
    sh(
      'sfdisk',
      ['--quiet', path],
      [
        'label: gpt',
        'start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649, name=bios',
        `size=64MiB, type=${gpt}, name=boot`,
        `size=160MiB, type=${gpt}, name=data`,
        '',
      ].join('\n'),
    );
    const layout = partitions(path);
    const grub = join(work, 'boot', 'grub');
    mkdirSync(join(grub, 'i386-pc'), { recursive: true });
    writeFileSync(join(grub, 'grub.cfg'), DEPLOY_GRUB_CFG);
    sh('grub-script-check', [join(grub, 'grub.cfg')]);
    const core = join(grub, 'i386-pc', 'core.img');
    sh('grub-mkimage', ['-O', 'i386-pc', '-o', core, '-p', '(hd0,gpt2)/grub', ...GRUB_MODULES]);
    copyFileSync('/usr/lib/grub/i386-pc/boot.img', join(grub, 'i386-pc', 'boot.img'));
    sh('grub-editenv', [join(grub, 'grubenv'), 'create']);
    mkdirSync(join(work, 'data', 'var'), { recursive: true });
    mkfsAt(path, join(work, 'boot'), join(work, 'boot.fs'), layout.boot!);
    mkfsAt(path, join(work, 'data'), join(work, 'data.fs'), layout.data!);
    // grub-bios-setup wants its directory on the image's own boot partition.
    const mnt = join(work, 'mnt');
    const undo = mountPart(path, layout.boot!, mnt);
    try {
      writeFileSync(join(work, 'device.map'), `(hd0) ${path}\n`);
      const setup = '/usr/lib/grub/i386-pc/grub-bios-setup';
      sh(setup, ['-d', join(mnt, 'grub', 'i386-pc'), '-m', join(work, 'device.map'), path]);
    } finally {
      undo();
    }
    return layout;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * Runs `fn` with the disk's partitions mounted under `root` as on the device (boot on /boot,
 * data on /data, data/var on /var) and `<root>/etc/ferry/system.toml` = DEPLOY_SYSTEM_TOML.
 * The guest must not be running. Everything is unmounted (and flushed to the image) after.
 */
export async function withDeviceRoot<T>(
  disk: string,
  layout: DiskLayout,
  root: string,
  fn: () => T | Promise<T>,
): Promise<T> {
  mkdirSync(join(root, 'etc', 'ferry'), { recursive: true });
  writeFileSync(join(root, 'etc', 'ferry', 'system.toml'), DEPLOY_SYSTEM_TOML);
  const undo: Array<() => void> = [];
  const mounted = async () => {
    undo.push(mountPart(disk, layout.boot!, join(root, 'boot')));
    undo.push(mountPart(disk, layout.data!, join(root, 'data')));
    mkdirSync(join(root, 'data', 'var'), { recursive: true });
    mkdirSync(join(root, 'var'), { recursive: true });
    sh('mount', ['--bind', join(root, 'data', 'var'), join(root, 'var')]);
    undo.push(() => sh('umount', [join(root, 'var')]));
    return await fn();
  };
  const result = await mounted().then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
  // Every undo runs, in reverse, whatever failed; the first failure is reported.
  let failure = 'error' in result ? result.error : undefined;
  for (const u of undo.reverse())
    try {
      u();
    } catch (e) {
      failure ??= e;
    }
  if (failure !== undefined) throw failure as Error;
  return (result as { value: T }).value;
}

/**
 * Ferry's view of the device under `root` (inside withDeviceRoot): the config parsed from
 * system.toml, and the store opened with `cmdline` as `/proc/cmdline`, so the deployment the
 * last boot ran (`ferry.deployment=` in it) is recorded as booted, as the agent does at boot.
 */
export async function openDevice(root: string, cmdline: string): Promise<DeviceDeployments> {
  mkdirSync(join(root, 'proc'), { recursive: true });
  writeFileSync(join(root, 'proc', 'cmdline'), cmdline);
  const path = join(root, 'etc', 'ferry', 'system.toml');
  return DeviceDeployments.open(parseConfig(readFileSync(path, 'utf8'), { root, path }));
}

/** `grub-editenv <grubenv> list` of the device mounted under `root`, as name -> value. */
export function grubEditenvList(root: string): Record<string, string> {
  const out = sh('grub-editenv', [join(root, 'boot', 'grub', 'grubenv'), 'list']);
  return Object.fromEntries(
    out
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
}
