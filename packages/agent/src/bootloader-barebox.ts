/**
 * The `barebox` bootloader backend: barebox's bootchooser state (priority and remaining_attempts
 * per target), read and written with dt-utils' `barebox-state`, with RAUC's values (barebox.c):
 * the primary gets priority 20 and the others 10 (a disabled 0 stays 0), mark-good resets
 * remaining_attempts, mark-bad zeroes both. Bootnames are the bootchooser target names.
 *
 * ```toml
 * [bootloader.barebox]
 * tool = "barebox-state"
 * prefix = "bootstate"
 * state-name = "state"      # optional: barebox-state -n
 * attempts = 3              # remaining_attempts written by mark-good
 * lock-attempts = false     # true: use <prefix>.attempts_locked (see docs/bootloaders/barebox.md)
 * ```
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FerryError } from '@ferry/core';
import type {
  Bootloader,
  BootloaderContext,
  BootloaderFactory,
  BootState,
  SlotBootState,
} from './bootloader.ts';
import { checkBootname, checkKeys, runBootTool, toolPath } from './bootloader-tool.ts';

export const PRIORITY_PRIMARY = 20;
export const PRIORITY_OTHER = 10;
const UINT32_MAX = 0xffff_ffff;

export interface BareboxTarget {
  name: string;
  priority: number;
  attempts: number;
}

interface BareboxOptions {
  tool: string;
  prefix: string;
  stateName?: string;
  attempts: number;
  lock: boolean;
}

/**
 * The target bootchooser boots next: the highest priority with priority > 0 and attempts > 0.
 * bootchooser keeps targets sorted with list_add_sort, so on equal priority the later one wins.
 */
export function bootchooserChoice(targets: BareboxTarget[]): string | undefined {
  let best: BareboxTarget | undefined;
  for (const t of targets)
    if (t.priority > 0 && t.attempts > 0 && (!best || t.priority >= best.priority)) best = t;
  return best?.name;
}

function parseOptions(ctx: BootloaderContext): BareboxOptions {
  const o = ctx.options;
  checkKeys('barebox', o, ['tool', 'prefix', 'state-name', 'attempts', 'lock-attempts']);
  const { prefix = 'bootstate', attempts = ctx.attempts } = o;
  const name = /^[A-Za-z0-9_-]{1,64}$/;
  if (typeof prefix !== 'string' || !name.test(prefix))
    throw new FerryError('CONFIG_INVALID', '[bootloader.barebox] prefix must be a state node name');
  if (
    o['state-name'] !== undefined &&
    (typeof o['state-name'] !== 'string' || !name.test(o['state-name']))
  )
    throw new FerryError('CONFIG_INVALID', '[bootloader.barebox] state-name must be a state name');
  if (
    typeof attempts !== 'number' ||
    !Number.isInteger(attempts) ||
    attempts < 1 ||
    attempts > 1000
  )
    throw new FerryError('CONFIG_INVALID', '[bootloader.barebox] attempts must be 1..1000');
  if (typeof (o['lock-attempts'] ?? false) !== 'boolean')
    throw new FerryError(
      'CONFIG_INVALID',
      '[bootloader.barebox] lock-attempts must be true or false',
    );
  for (const b of ctx.bootnames)
    if (!name.test(b))
      throw new FerryError(
        'CONFIG_INVALID',
        `bootname '${b}' is not a valid bootchooser target name`,
      );
  return {
    tool: toolPath('barebox', ctx.root, o.tool, 'barebox-state'),
    prefix,
    attempts,
    lock: o['lock-attempts'] === true,
    ...(typeof o['state-name'] === 'string' ? { stateName: o['state-name'] } : {}),
  };
}

function parseUint32(line: string | undefined, what: string): number {
  if (line === undefined || !/^\d{1,10}$/.test(line.trim()) || Number(line) > UINT32_MAX)
    throw new FerryError(
      'BOOTLOADER_STATE_INVALID',
      `barebox-state: ${what} is not a uint32: '${String(line).slice(0, 40)}'`,
    );
  return Number(line);
}

export class BareboxBootloader implements Bootloader {
  readonly name = 'barebox';
  readonly options: BareboxOptions;
  readonly #ctx: BootloaderContext;

  constructor(ctx: BootloaderContext) {
    this.options = parseOptions(ctx);
    this.#ctx = ctx;
  }

  #var(target: string, v: 'priority' | 'remaining_attempts'): string {
    return `${this.options.prefix}.${target}.${v}`;
  }

  #run(args: string[]): Promise<string> {
    const n = this.options.stateName;
    return runBootTool(this.options.tool, [...(n ? ['-n', n] : []), ...args]);
  }

  /** Every target's priority and attempts, and whether attempts are locked, in one call. */
  async read(): Promise<{ targets: BareboxTarget[]; locked: boolean }> {
    const names = this.#ctx.bootnames;
    const vars = names.flatMap((b) => [
      this.#var(b, 'priority'),
      this.#var(b, 'remaining_attempts'),
    ]);
    if (this.options.lock) vars.push(`${this.options.prefix}.attempts_locked`);
    const lines = (await this.#run(vars.flatMap((v) => ['-g', v]))).split('\n');
    const num = (i: number) => parseUint32(lines[i], vars[i]!);
    const targets = names.map((name, i) => ({
      name,
      priority: num(2 * i),
      attempts: num(2 * i + 1),
    }));
    return { targets, locked: this.options.lock && num(vars.length - 1) !== 0 };
  }

  async #set(pairs: Array<[string, number]>): Promise<void> {
    await this.#run(pairs.flatMap(([k, v]) => ['-s', `${k}=${v}`]));
  }

  async getPrimary(): Promise<string | undefined> {
    return bootchooserChoice((await this.read()).targets);
  }

  async setPrimary(bootname: string, attempts: number): Promise<void> {
    checkBootname(this.#ctx.bootnames, bootname);
    if (!Number.isInteger(attempts) || attempts < 1 || attempts > UINT32_MAX)
      throw new FerryError('USAGE', `attempts must be a positive integer, got ${attempts}`);
    const { targets } = await this.read();
    const pairs: Array<[string, number]> = targets.map((t) => [
      this.#var(t.name, 'priority'),
      t.name === bootname ? PRIORITY_PRIMARY : t.priority === 0 ? 0 : PRIORITY_OTHER,
    ]);
    pairs.push([this.#var(bootname, 'remaining_attempts'), attempts]);
    // The trial must count: unlock in the same state_save as the new priorities.
    if (this.options.lock) pairs.push([`${this.options.prefix}.attempts_locked`, 0]);
    await this.#set(pairs);
  }

  async getState(bootname: string): Promise<BootState> {
    checkBootname(this.#ctx.bootnames, bootname);
    const { targets, locked } = await this.read();
    const t = targets.find((x) => x.name === bootname)!;
    const good = t.priority > 0 && t.attempts > 0;
    return { state: good ? 'good' : 'bad', ...(locked ? {} : { attemptsLeft: t.attempts }) };
  }

  async setState(bootname: string, state: SlotBootState): Promise<void> {
    checkBootname(this.#ctx.bootnames, bootname);
    if (state === 'bad') {
      await this.#set([
        [this.#var(bootname, 'priority'), 0],
        [this.#var(bootname, 'remaining_attempts'), 0],
      ]);
      return;
    }
    const { targets } = await this.read();
    const t = targets.find((x) => x.name === bootname)!;
    // Committed means bootable: a disabled target (priority 0) is re-enabled behind the primary.
    if (t.priority === 0) t.priority = PRIORITY_OTHER;
    t.attempts = this.options.attempts;
    const pairs: Array<[string, number]> = [
      [this.#var(bootname, 'priority'), t.priority],
      [this.#var(bootname, 'remaining_attempts'), t.attempts],
    ];
    // Lock only when the committed slot is the one that boots next: locking while another
    // slot is on trial would let a broken trial boot forever.
    if (this.options.lock && bootchooserChoice(targets) === bootname)
      pairs.push([`${this.options.prefix}.attempts_locked`, 1]);
    await this.#set(pairs);
  }

  /** From `bootstate.active=` / `bootchooser.active=` on the kernel command line (as RAUC). */
  async getCurrent(): Promise<string | undefined> {
    const cmdline = await readFile(join(this.#ctx.root, '/proc/cmdline'), 'utf8').catch(() => '');
    const m = /(?:^|\s)(?:bootstate|bootchooser)\.active=(\S+)/.exec(cmdline.slice(0, 64 * 1024));
    return m && this.#ctx.bootnames.includes(m[1]!) ? m[1] : undefined;
  }
}

/** Factory for BOOTLOADERS: `barebox`. */
export const bareboxBootloader: BootloaderFactory = (ctx) => new BareboxBootloader(ctx);
