/**
 * kexec: the next system's kernel started by the running one, without firmware and bootloader
 * (as EOS and Garden Linux apply updates). The bootloader does not run, so Ferry plays its part:
 *
 * 1. **choose**: the backend names the slot its boot script would boot next
 *    (`Bootloader.nextBoot`); backends that cannot refuse with KEXEC_UNSUPPORTED;
 * 2. **check**: that slot holds an installed image, and its bytes still hash to the SHA-256
 *    verified at install (IMAGE_HASH_MISMATCH otherwise);
 * 3. **load**: the image is mounted read-only, nodev, nosuid, noexec; `[kexec] kernel` and
 *    `initrd` are read from it (never through a link leading out of it) by `kexec -l`, with the
 *    command line `[kexec] cmdline` builds for that slot; then it is unmounted;
 * 4. **count**: the backend consumes one boot attempt exactly as its boot script would
 *    (`Bootloader.countBootAttempt`);
 * 5. **start**: `sync`, then `kexec -e`. Should it return, the attempt is given back.
 *
 * Until step 4 nothing on the device has changed: a failure there is KEXEC_FAILED or
 * KEXEC_NO_TARGET and the device is as it was.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, realpath, rmdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, sep } from 'node:path';
import { FerryError } from '@ferry/core';
import type { Bootloader } from './bootloader.ts';
import { bootableSlots, type SlotConfig, type SystemConfig } from './config.ts';
import { kexecCommandLine } from './kexec-cmdline.ts';
import { slotImageMountOptions } from './esp-kernel.ts';
import type { AgentState, SlotRecord } from './state.ts';

/** What a kexec reboot starts: the slot, the files inside its image and the command line. */
export interface KexecPlan {
  slot: string;
  bootname: string;
  /** Paths inside the slot's image. */
  kernel: string;
  initrd?: string;
  cmdline: string;
  /** Attempts the slot has left once this boot is counted (slots on trial). */
  attemptsLeft?: number;
}

/**
 * Decides what a kexec reboot would start, without touching anything: the slot the boot script
 * would choose must be a configured bootable slot holding an installed image.
 */
export function planKexec(
  config: Pick<SystemConfig, 'slots' | 'kexec'>,
  state: Pick<AgentState, 'slots'>,
  next: { bootname?: string; attemptsLeft?: number },
): { plan: KexecPlan; slot: SlotConfig; image: NonNullable<SlotRecord['image']> } {
  if (next.bootname === undefined)
    throw new FerryError('KEXEC_NO_TARGET', 'the bootloader has no bootable slot to start');
  const slot = bootableSlots(config).find((s) => s.bootname === next.bootname);
  if (!slot)
    throw new FerryError('KEXEC_NO_TARGET', `bootname ${next.bootname} is not a configured slot`);
  const rec = state.slots[slot.name];
  if (rec?.status !== 'installed' || !rec.image)
    throw new FerryError(
      'KEXEC_NO_TARGET',
      `${slot.name} (${next.bootname}) holds no installed image (${rec?.status ?? 'unknown'})`,
    );
  // Only a filesystem image can be mounted to read the kernel from.
  if (rec.image.type !== 'squashfs' && rec.image.type !== 'erofs')
    throw new FerryError(
      'KEXEC_NO_TARGET',
      `${slot.name} holds a ${rec.image.type} image: no kernel can be read from it`,
    );
  const { kernel, initrd, cmdline } = config.kexec;
  return {
    slot,
    image: rec.image,
    plan: {
      slot: slot.name,
      bootname: next.bootname,
      kernel,
      ...(initrd !== '' ? { initrd } : {}),
      cmdline: kexecCommandLine(cmdline, slot),
      ...(next.attemptsLeft !== undefined ? { attemptsLeft: next.attemptsLeft } : {}),
    },
  };
}

/** The kexec executable: FERRY_KEXEC_COMMAND, else `kexec` on the PATH. */
function kexecCommand(): string {
  return process.env.FERRY_KEXEC_COMMAND ?? 'kexec';
}

function run(cmd: string, args: string[], code: 'KEXEC_FAILED' | 'IO'): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d: Buffer) => (err = (err + d.toString('utf8')).slice(-2000)));
    p.on('error', (e) => reject(new FerryError(code, `${cmd}: ${e.message}`, { cause: e })));
    p.on('close', (rc) =>
      rc === 0
        ? resolve()
        : reject(new FerryError(code, `${cmd} ${args[0] ?? ''} exited ${rc}: ${err.trim()}`)),
    );
  });
}

/** The slot still holds the image verified at install: its first `size` bytes hash to it. */
async function checkImage(slot: SlotConfig, image: { sha256: string; size: number }) {
  const h = createHash('sha256');
  const stream = createReadStream(slot.device, {
    start: slot.offset,
    end: slot.offset + image.size - 1,
    highWaterMark: 1 << 20,
  });
  let n = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    h.update(chunk);
    n += chunk.length;
  }
  if (n !== image.size || h.digest('hex') !== image.sha256)
    throw new FerryError(
      'IMAGE_HASH_MISMATCH',
      `${slot.name} no longer holds the image installed there: not starting it`,
    );
}

/** `path` inside the mounted image as a regular file; a link leading out of it is refused. */
async function inImage(mnt: string, path: string, what: string): Promise<string> {
  let real: string;
  try {
    real = await realpath(join(mnt, path));
  } catch (e) {
    throw new FerryError('KEXEC_FAILED', `${what} ${path} is not in the image`, { cause: e });
  }
  // An absolute symlink in the image would resolve against the running system. The mount point
  // is compared resolved too, in case the temporary directory's path runs through a link.
  const root = await realpath(mnt);
  if (!real.startsWith(root + sep) || !(await stat(real)).isFile())
    throw new FerryError('KEXEC_FAILED', `${what} ${path} is not a regular file inside the image`);
  return real;
}

/** Mounts the slot's image read-only, nodev, nosuid, noexec and runs `kexec -l` from it. */
async function loadFromImage(
  slot: SlotConfig,
  image: { type: string; size: number },
  plan: KexecPlan,
): Promise<void> {
  const opts = await slotImageMountOptions(slot.device, slot.offset, image.size);
  const mnt = await mkdtemp(join(tmpdir(), 'ferry-kexec-'));
  try {
    await run('mount', ['-t', image.type, '-o', opts, slot.device, mnt], 'KEXEC_FAILED');
    try {
      const kernel = await inImage(mnt, plan.kernel, 'kernel');
      const initrd = plan.initrd ? await inImage(mnt, plan.initrd, 'initrd') : undefined;
      await run(
        kexecCommand(),
        ['-l', kernel, ...(initrd ? [`--initrd=${initrd}`] : []), `--command-line=${plan.cmdline}`],
        'KEXEC_FAILED',
      );
    } finally {
      await run('umount', [mnt], 'IO');
    }
  } finally {
    // rmdir, never a recursive rm: if the unmount failed, the mount point holds the image.
    await rmdir(mnt).catch(() => undefined);
  }
}

/** What a kexec reboot needs from the agent. */
export interface KexecDevice {
  config: SystemConfig;
  bootloader: Bootloader;
  state: AgentState;
}

/**
 * Steps 1-3: chooses the slot, checks its image and loads its kernel. Nothing on the device
 * changes; an error leaves it as it was.
 */
export async function loadKexec(dev: KexecDevice): Promise<KexecPlan> {
  const bl = dev.bootloader;
  if (dev.config.deploy.boot !== 'none')
    throw new FerryError('KEXEC_UNSUPPORTED', 'kexec starts A/B slots, not deployments');
  if (!bl.nextBoot || !bl.countBootAttempt)
    throw new FerryError(
      'KEXEC_UNSUPPORTED',
      `the ${bl.name} backend cannot count a boot attempt outside the bootloader`,
    );
  const { plan, slot, image } = planKexec(dev.config, dev.state, await bl.nextBoot());
  await checkImage(slot, image);
  await loadFromImage(slot, image, plan);
  return plan;
}

/**
 * Steps 4-5: counts the attempt, syncs and starts the loaded kernel. Returns only if `kexec -e`
 * did not start it; then the attempt has been given back and KEXEC_FAILED is thrown.
 */
export async function execKexec(dev: KexecDevice, plan: KexecPlan): Promise<never> {
  const giveBack = await dev.bootloader.countBootAttempt!(plan.bootname);
  let why: unknown;
  try {
    await run('sync', [], 'IO');
    await run(kexecCommand(), ['-e'], 'KEXEC_FAILED');
  } catch (e) {
    why = e;
  }
  await giveBack();
  await run(kexecCommand(), ['-u'], 'KEXEC_FAILED').catch(() => undefined);
  throw new FerryError(
    'KEXEC_FAILED',
    `kexec -e did not start ${plan.slot}${why ? `: ${(why as Error).message}` : ''}`,
    { cause: why },
  );
}
