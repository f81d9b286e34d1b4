/**
 * Deciding an install is a pure function over data: the signed manifest, the device's
 * configuration, its state, which slot is booted and what the bootloader says. No disks, no
 * network: tested exhaustively in install-plan.test.ts. `install.ts` executes the plan.
 */
import { FerryError, type Manifest } from '@ferry/core';
import type { BootState } from './bootloader.ts';
import type { SlotConfig, SystemConfig } from './config.ts';
import type { AgentState } from './state.ts';

export interface PlanInput {
  manifest: Manifest;
  /** SHA-256 of the manifest's canonical bytes: identifies the release. */
  manifestSha256: string;
  config: Pick<SystemConfig, 'compatible' | 'slots' | 'policy' | 'bootAttempts'>;
  state: Pick<AgentState, 'highWaterCounter' | 'slots'>;
  booted: SlotConfig;
  /** Bootloader state by bootname. */
  bootStates: Record<string, BootState>;
  /** Usable bytes of each slot region, by slot name (from config or the device); absent when the device is missing. */
  slotSizes: Record<string, number>;
}

export interface InstallTarget {
  /** Manifest image name (= slot class). */
  image: string;
  slot: SlotConfig;
  imageSize: number;
  /** Where the dm-verity tree goes inside the slot: right after the image, 4 KiB aligned. */
  hashOffset: number;
  /** Bytes the slot must hold: image, padding and tree. */
  needed: number;
}

export interface InstallPlan {
  /** The bootable slot the new release boots from. */
  bootSlot: SlotConfig;
  bootname: string;
  attempts: number;
  targets: InstallTarget[];
}

const align4k = (n: number) => Math.ceil(n / 4096) * 4096;

function overlaps(a: SlotConfig, b: SlotConfig, sizes: Record<string, number>): boolean {
  if (a.device !== b.device) return false;
  const aEnd = a.offset + (sizes[a.name] ?? Number.MAX_SAFE_INTEGER);
  const bEnd = b.offset + (sizes[b.name] ?? Number.MAX_SAFE_INTEGER);
  return a.offset < bEnd && b.offset < aEnd;
}

/** Slots that belong with a bootable slot: itself and its children. */
export function groupOf(slots: SlotConfig[], boot: SlotConfig): SlotConfig[] {
  return slots.filter((s) => s.name === boot.name || s.parent === boot.name);
}

/**
 * Picks the bootable slot to install into: never the booted one; prefer a slot holding nothing
 * useful (empty, half-written, unknown), then one the bootloader considers bad, then the one
 * installed longest ago, so the most recent good fallback survives. Ties go by config order.
 */
export function chooseBootSlot(input: PlanInput): SlotConfig {
  const candidates = input.config.slots.filter(
    (s) => s.bootname !== undefined && s.name !== input.booted.name && !s.readonly,
  );
  if (candidates.length === 0)
    throw new FerryError(
      'INSTALL_NO_TARGET',
      `no bootable slot other than the booted ${input.booted.name}`,
    );
  const rank = (s: SlotConfig): [number, string] => {
    const rec = input.state.slots[s.name];
    if (!rec || rec.status !== 'installed') return [0, ''];
    if (input.bootStates[s.bootname!]?.state === 'bad') return [1, ''];
    return [2, rec.installedAt ?? ''];
  };
  return [...candidates].sort((a, b) => {
    const [ra, ta] = rank(a);
    const [rb, tb] = rank(b);
    return ra - rb || (ta < tb ? -1 : ta > tb ? 1 : 0);
  })[0]!;
}

/**
 * Plans an install, or throws the refusal: wrong device class, downgrade, reinstall against
 * policy, no target, target too small, target overlapping the booted system.
 */
export function planInstall(input: PlanInput): InstallPlan {
  const { manifest, config, state } = input;
  if (manifest.compatible !== config.compatible)
    throw new FerryError(
      'BUNDLE_INCOMPATIBLE',
      `bundle is for '${manifest.compatible}', this device is '${config.compatible}'`,
    );
  // Refuse a lower release counter: the rollback attack (an old, validly signed, vulnerable release).
  if (manifest.releaseCounter < state.highWaterCounter && !config.policy.allowDowngrade)
    throw new FerryError(
      'BUNDLE_DOWNGRADE',
      `release counter ${manifest.releaseCounter} is below ${state.highWaterCounter}, the highest this device has committed`,
    );
  const running = state.slots[input.booted.name]?.release;
  if (running?.manifestSha256 === input.manifestSha256 && !config.policy.allowReinstall)
    throw new FerryError('BUNDLE_REINSTALL', `release ${manifest.version} is already running`);
  const bootSlot = chooseBootSlot(input);
  const group = groupOf(config.slots, bootSlot);
  const bootedGroup = groupOf(config.slots, input.booted);
  const targets: InstallTarget[] = [];
  for (const [image, img] of Object.entries(manifest.images).sort(([a], [b]) => (a < b ? -1 : 1))) {
    const slot = group.find((s) => s.class === image);
    if (!slot)
      throw new FerryError(
        'INSTALL_NO_TARGET',
        `no slot of class '${image}' belongs with ${bootSlot.name}`,
      );
    if (img.type === 'tar')
      throw new FerryError(
        'INSTALL_NO_TARGET',
        `image ${image} is a tar archive; Ferry installs filesystem and raw images into slots`,
      );
    // Invariant: the running system is never written, whatever the configuration says.
    if (bootedGroup.some((b) => b.name === slot.name || overlaps(b, slot, input.slotSizes)))
      throw new FerryError('INSTALL_TARGET_BOOTED', `slot ${slot.name} overlaps the booted system`);
    const hashOffset = align4k(img.size);
    const needed = hashOffset + img.verity.treeSize;
    const have = input.slotSizes[slot.name];
    if (have === undefined)
      throw new FerryError(
        'INSTALL_SLOT_MISSING',
        `slot ${slot.name}: device ${slot.device} is missing or shorter than the configured region`,
      );
    if (needed > have)
      throw new FerryError(
        'INSTALL_SLOT_TOO_SMALL',
        `image ${image} needs ${needed} bytes with its verity tree, slot ${slot.name} has ${have}`,
      );
    targets.push({ image, slot, imageSize: img.size, hashOffset, needed });
  }
  return { bootSlot, bootname: bootSlot.bootname!, attempts: config.bootAttempts, targets };
}
