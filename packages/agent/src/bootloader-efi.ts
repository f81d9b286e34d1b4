/**
 * The `efi` bootloader backend: the firmware's own boot manager, through `efibootmgr` (RAUC's
 * efi.c). Each slot is a Boot#### entry labelled with its bootname; a slot is committed while it
 * is in BootOrder, and a new slot is tried once through BootNext, which the firmware deletes
 * before it boots the entry. There is no counter: a trial has exactly one attempt.
 *
 * ```toml
 * [bootloader.efi]
 * tool = "efibootmgr"
 * use-bootnext = true
 * ```
 */
import { FerryError } from '@ferry/core';
import type {
  Bootloader,
  BootloaderContext,
  BootloaderFactory,
  BootState,
  SlotBootState,
} from './bootloader.ts';
import { checkBootname, checkKeys, runBootTool, toolPath } from './bootloader-tool.ts';

/** What `efibootmgr` (no arguments) reports. Boot numbers are 4 upper-case hex digits. */
export interface EfiBootVars {
  entries: Array<{ num: string; label: string }>;
  order: string[];
  next?: string;
  current?: string;
}

/** Parses efibootmgr's listing (versions 17 and 18; anything after a tab is the device path). */
export function parseEfibootmgr(out: string): EfiBootVars {
  const entries: EfiBootVars['entries'] = [];
  for (const m of out.matchAll(/^Boot([0-9A-Fa-f]{4})[* ] ([^\t\n]*)/gm))
    entries.push({ num: m[1]!.toUpperCase(), label: m[2]!.trim() });
  const one = (re: RegExp) => re.exec(out)?.[1]?.toUpperCase();
  const order = one(/^BootOrder: (\S*)$/m);
  const vars: EfiBootVars = { entries, order: order ? order.split(',') : [] };
  if (vars.order.some((n) => !/^[0-9A-F]{4}$/.test(n)))
    throw new FerryError(
      'BOOTLOADER_STATE_INVALID',
      `efibootmgr: malformed BootOrder '${order?.slice(0, 80)}'`,
    );
  const next = one(/^BootNext: ([0-9A-Fa-f]{4})$/m);
  const current = one(/^BootCurrent: ([0-9A-Fa-f]{4})$/m);
  if (next) vars.next = next;
  if (current) vars.current = current;
  return vars;
}

function parseOptions(ctx: BootloaderContext): { tool: string; useBootNext: boolean } {
  checkKeys('efi', ctx.options, ['tool', 'use-bootnext']);
  const useBootNext = ctx.options['use-bootnext'] ?? true;
  if (typeof useBootNext !== 'boolean')
    throw new FerryError('CONFIG_INVALID', '[bootloader.efi] use-bootnext must be true or false');
  return { tool: toolPath('efi', ctx.root, ctx.options.tool, 'efibootmgr'), useBootNext };
}

export class EfiBootloader implements Bootloader {
  readonly name = 'efi';
  readonly tool: string;
  readonly useBootNext: boolean;
  readonly #bootnames: string[];

  constructor(ctx: BootloaderContext) {
    const o = parseOptions(ctx);
    this.tool = o.tool;
    this.useBootNext = o.useBootNext;
    this.#bootnames = ctx.bootnames;
  }

  /** The current EFI boot variables. */
  async read(): Promise<EfiBootVars> {
    return parseEfibootmgr(await runBootTool(this.tool, []));
  }

  /** Boot number of the slot's entry; exactly one entry must carry the bootname as label. */
  #num(v: EfiBootVars, bootname: string): string {
    const found = v.entries.filter((e) => e.label === bootname);
    if (found.length !== 1)
      throw new FerryError(
        'BOOTLOADER_STATE_INVALID',
        `expected one EFI Boot#### entry labelled '${bootname}', found ${found.length}`,
      );
    return found[0]!.num;
  }

  #slotOf(v: EfiBootVars, num: string | undefined): string | undefined {
    const label = v.entries.find((e) => e.num === num)?.label;
    return label !== undefined && this.#bootnames.includes(label) ? label : undefined;
  }

  async #setOrder(order: string[]): Promise<void> {
    await runBootTool(
      this.tool,
      order.length > 0 ? ['--bootorder', order.join(',')] : ['--delete-bootorder'],
    );
  }

  async getPrimary(): Promise<string | undefined> {
    const v = await this.read();
    // BootNext wins for the next boot (RAUC prepends it too).
    for (const num of [...(v.next ? [v.next] : []), ...v.order]) {
      const slot = this.#slotOf(v, num);
      if (slot) return slot;
    }
    return undefined;
  }

  async setPrimary(bootname: string, attempts: number): Promise<void> {
    checkBootname(this.#bootnames, bootname);
    if (!Number.isInteger(attempts) || attempts < 1)
      throw new FerryError('USAGE', `attempts must be a positive integer, got ${attempts}`);
    const v = await this.read();
    const num = this.#num(v, bootname);
    const rest = v.order.filter((n) => n !== num);
    if (!this.useBootNext) {
      await this.#setOrder([num, ...rest]);
      if (v.next && v.next !== num) await runBootTool(this.tool, ['--delete-bootnext']);
      return;
    }
    // Off BootOrder first: a power cut between the two calls leaves the old primary booting.
    if (rest.length !== v.order.length) await this.#setOrder(rest);
    await runBootTool(this.tool, ['--bootnext', num]);
  }

  async getState(bootname: string): Promise<BootState> {
    checkBootname(this.#bootnames, bootname);
    const v = await this.read();
    const num = this.#num(v, bootname);
    if (v.order.includes(num)) return { state: 'good' };
    if (v.next === num) return { state: 'good', attemptsLeft: 1 };
    return { state: 'bad' };
  }

  async setState(bootname: string, state: SlotBootState): Promise<void> {
    checkBootname(this.#bootnames, bootname);
    const v = await this.read();
    const num = this.#num(v, bootname);
    if (state === 'good') {
      // A committed slot keeps its place; one on trial (off BootOrder) goes first, as in RAUC.
      if (!v.order.includes(num)) await this.#setOrder([num, ...v.order]);
      return;
    }
    if (v.order.includes(num)) await this.#setOrder(v.order.filter((n) => n !== num));
    if (v.next === num) await runBootTool(this.tool, ['--delete-bootnext']);
  }

  async getCurrent(): Promise<string | undefined> {
    const v = await this.read();
    return this.#slotOf(v, v.current);
  }
}

/** Factory for BOOTLOADERS: `efi`. */
export const efiBootloader: BootloaderFactory = (ctx) => new EfiBootloader(ctx);
