/**
 * The table of bootloader backends, chosen by name from system.toml (RAUC's image_type_map[]
 * style: a table, not `if` chains).
 */
import { FerryError } from '@ferry/core';
import type { Bootloader, BootloaderFactory } from './bootloader.ts';
import { bareboxBootloader } from './bootloader-barebox.ts';
import { customBootloader } from './bootloader-custom.ts';
import { efiBootloader } from './bootloader-efi.ts';
import { FileBootloader } from './bootloader-file.ts';
import { grubBootloader } from './bootloader-grub.ts';
import { ubootBootloader } from './bootloader-uboot.ts';
import { systemdBootBootloader } from './bootloader-systemd-boot.ts';
import type { SystemConfig } from './config.ts';

export const BOOTLOADERS: Record<string, BootloaderFactory> = {
  file: (ctx) => new FileBootloader(ctx),
  grub: grubBootloader,
  uboot: ubootBootloader,
  'systemd-boot': systemdBootBootloader,
  barebox: bareboxBootloader,
  efi: efiBootloader,
  custom: customBootloader,
};

/** The configured backend, with its options from [bootloader.<name>]. */
export function createBootloader(config: SystemConfig): Bootloader {
  const factory = BOOTLOADERS[config.bootloader.backend];
  if (!factory)
    throw new FerryError(
      'CONFIG_INVALID',
      `bootloader '${config.bootloader.backend}' is not available (have ${Object.keys(BOOTLOADERS).join(', ')})`,
    );
  return factory({
    root: config.root,
    bootnames: config.slots.filter((s) => s.bootname !== undefined).map((s) => s.bootname!),
    options: config.bootloader.options,
    attempts: config.bootAttempts,
  });
}
