/**
 * The kernel command line a kexec reboot gives the next slot's kernel: `[kexec] cmdline` with
 * the slot's placeholders filled in, the line the bootloader's menu entry would pass it.
 */
import type { SlotConfig } from './config.ts';

/** The placeholders `[kexec] cmdline` may use, and what each becomes for a slot. */
export const KEXEC_CMDLINE_FIELDS: Record<string, (s: SlotConfig) => string> = {
  bootname: (s) => s.bootname ?? '',
  'bootname-lower': (s) => (s.bootname ?? '').toLowerCase(),
  slot: (s) => s.name,
  device: (s) => s.device,
};

/** Why a command line template is refused, or undefined when it is fine. */
export function kexecCmdlineProblem(template: string): string | undefined {
  if (!/^[ -~]*$/.test(template)) return 'must be printable ASCII on one line';
  for (const m of template.matchAll(/\{([^}]*)\}/g))
    if (!Object.hasOwn(KEXEC_CMDLINE_FIELDS, m[1]!))
      return `has an unknown placeholder {${m[1]}} (have ${Object.keys(KEXEC_CMDLINE_FIELDS)
        .map((k) => `{${k}}`)
        .join(', ')})`;
  return undefined;
}

/**
 * The kernel command line for `slot`: `template` with its placeholders filled in, and spaces
 * collapsed. The template is checked when system.toml is read (kexecCmdlineProblem).
 *
 * @example
 * kexecCommandLine('root=PARTLABEL=rootfs-{bootname-lower} ro ferry.slot={bootname}', slotB)
 * // 'root=PARTLABEL=rootfs-b ro ferry.slot=B'
 */
export function kexecCommandLine(template: string, slot: SlotConfig): string {
  return template
    .replace(/\{([^}]*)\}/g, (_, k: string) => KEXEC_CMDLINE_FIELDS[k]!(slot))
    .split(' ')
    .filter((w) => w !== '')
    .join(' ');
}
