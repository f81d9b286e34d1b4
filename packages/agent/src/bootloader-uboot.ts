/**
 * The `uboot` bootloader backend: boot selection in the U-Boot environment, read at every boot
 * by contrib/uboot/ferry-boot.cmd. Variables are RAUC's, plus one flag of Ferry's own:
 *
 * - `BOOT_ORDER`: bootnames, space-separated, primary first; a slot marked bad is removed.
 * - `BOOT_<X>_LEFT`: boot attempts left, hexadecimal without prefix (RAUC's `%x`, what U-Boot's
 *   `setexpr` writes). X is bootable while it is in BOOT_ORDER and LEFT > 0, as RAUC reads it.
 * - `BOOT_<X>_TRIAL` (Ferry): `1` while X is on trial. The boot script decrements LEFT only for
 *   a slot on trial, so a committed slot keeps booting without userspace resetting its count
 *   every boot (RAUC's script decrements every slot on every boot).
 *
 * ```toml
 * [bootloader.uboot]
 * env = "/dev/mmcblk0"         # file or device holding the environment
 * offset = 0x3f8000            # default 0
 * size = 0x4000                # required (CONFIG_ENV_SIZE)
 * redundant-offset = 0x3fc000  # optional: makes the environment redundant
 * # or instead of the four keys above:
 * # config = "/etc/fw_env.config"
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
import {
  checkUbootEnvLayout,
  parseCNumber,
  parseFwEnvConfig,
  readUbootEnv,
  type UbootEnvLayout,
  type UbootEnvSnapshot,
  writeUbootEnv,
} from './uboot-env.ts';

/** What ferry-boot.cmd assumes for an unset BOOT_<X>_LEFT (RAUC's contrib/uboot.sh default). */
export const UBOOT_DEFAULT_LEFT = 3;

const KEYS = ['env', 'offset', 'size', 'redundant-offset', 'config'];

function configError(message: string): FerryError {
  return new FerryError('CONFIG_INVALID', `[bootloader.uboot]: ${message}`);
}

function number(options: Record<string, unknown>, key: string): number | undefined {
  const v = options[key];
  if (v === undefined) return undefined;
  const n = typeof v === 'number' ? v : typeof v === 'string' ? parseCNumber(v) : undefined;
  if (n === undefined || !Number.isSafeInteger(n) || n < 0)
    throw configError(`${key} must be a non-negative integer (e.g. 16384 or "0x4000")`);
  return n;
}

function absolute(root: string, key: string, v: unknown): string {
  if (typeof v !== 'string' || !v.startsWith('/'))
    throw configError(`${key} must be an absolute path`);
  return join(root, v);
}

/** The layout from the options, or the path of an fw_env.config to read it from. */
function checkOptions(ctx: BootloaderContext): UbootEnvLayout | string {
  const o = ctx.options;
  for (const k of Object.keys(o)) if (!KEYS.includes(k)) throw configError(`unknown key '${k}'`);
  for (const b of ctx.bootnames)
    if (!/^[A-Za-z0-9_]+$/.test(b))
      throw configError(`bootname '${b}' cannot be part of a variable name`);
  if (o.config !== undefined) {
    if (KEYS.some((k) => k !== 'config' && o[k] !== undefined))
      throw configError('config excludes env, offset, size and redundant-offset');
    return absolute(ctx.root, 'config', o.config);
  }
  const path = absolute(ctx.root, 'env', o.env);
  const size = number(o, 'size');
  if (size === undefined) throw configError('size is required');
  const copies = [{ path, offset: number(o, 'offset') ?? 0 }];
  const redundant = number(o, 'redundant-offset');
  if (redundant !== undefined) copies.push({ path, offset: redundant });
  const layout = { size, copies };
  checkUbootEnvLayout(layout);
  return layout;
}

/** BOOT_<X>_LEFT as the script's `test 0x${BOOT_X_LEFT} -gt 0` reads it. */
function leftValue(v: string | undefined): number {
  if (v === undefined || v === '') return UBOOT_DEFAULT_LEFT;
  return /^[0-9a-fA-F]{1,8}$/.test(v) ? Number.parseInt(v, 16) : 0;
}

export class UbootBootloader implements Bootloader {
  readonly name = 'uboot';
  readonly #root: string;
  readonly #bootnames: string[];
  readonly #attempts: number;
  #layout: UbootEnvLayout | string;

  constructor(ctx: BootloaderContext) {
    this.#layout = checkOptions(ctx);
    this.#root = ctx.root;
    this.#bootnames = ctx.bootnames;
    // As RAUC: a non-positive default count would mark the slot bad instead of good.
    this.#attempts = ctx.attempts > 0 ? ctx.attempts : UBOOT_DEFAULT_LEFT;
  }

  /** Where the environment is; an fw_env.config is read (and its paths rooted) on first use. */
  async layout(): Promise<UbootEnvLayout> {
    if (typeof this.#layout === 'string') {
      const parsed = parseFwEnvConfig(await readFile(this.#layout, 'latin1'));
      const copies = parsed.copies.map((c) => ({
        ...c,
        path: absolute(this.#root, 'config device', c.path),
      }));
      this.#layout = { size: parsed.size, copies };
    }
    return this.#layout;
  }

  async read(): Promise<UbootEnvSnapshot> {
    return readUbootEnv(await this.layout());
  }

  async write(env: UbootEnvSnapshot): Promise<void> {
    await writeUbootEnv(await this.layout(), env.vars, env);
  }

  /** BOOT_ORDER as the boot script sees it: unset or empty means the configured order. */
  order(vars: Map<string, string>): string[] {
    const order = vars.get('BOOT_ORDER');
    if (order === undefined || order === '') return [...this.#bootnames];
    return order.split(' ').filter((b) => b !== '');
  }

  #check(bootname: string): void {
    if (!this.#bootnames.includes(bootname))
      throw new FerryError(
        'BOOTLOADER_SLOT_UNKNOWN',
        `no bootable slot named '${bootname}' (have ${this.#bootnames.join(', ')})`,
      );
  }

  #good(vars: Map<string, string>, b: string): boolean {
    return this.order(vars).includes(b) && leftValue(vars.get(`BOOT_${b}_LEFT`)) > 0;
  }

  async getPrimary(): Promise<string | undefined> {
    const { vars } = await this.read();
    return this.order(vars).find((b) => this.#bootnames.includes(b) && this.#good(vars, b));
  }

  async setPrimary(bootname: string, attempts: number): Promise<void> {
    this.#check(bootname);
    if (!Number.isInteger(attempts) || attempts < 1 || attempts > 0xffff)
      throw new FerryError('CONFIG_INVALID', `boot attempts must be 1..65535, not ${attempts}`);
    const env = await this.read();
    const order = [bootname, ...this.order(env.vars).filter((b) => b !== bootname)];
    env.vars.set('BOOT_ORDER', order.join(' '));
    env.vars.set(`BOOT_${bootname}_LEFT`, attempts.toString(16));
    env.vars.set(`BOOT_${bootname}_TRIAL`, '1');
    await this.write(env);
  }

  async getState(bootname: string): Promise<BootState> {
    this.#check(bootname);
    const { vars } = await this.read();
    const state = this.#good(vars, bootname) ? 'good' : 'bad';
    const left = leftValue(vars.get(`BOOT_${bootname}_LEFT`));
    const counting = vars.get(`BOOT_${bootname}_TRIAL`) === '1' || left === 0;
    return counting ? { state, attemptsLeft: left } : { state };
  }

  async setState(bootname: string, state: SlotBootState): Promise<void> {
    this.#check(bootname);
    const env = await this.read();
    const order = this.order(env.vars);
    if (state === 'good') {
      // RAUC's mark-good: the full count again; Ferry's script no longer decrements it.
      env.vars.set(`BOOT_${bootname}_LEFT`, this.#attempts.toString(16));
      if (!order.includes(bootname)) env.vars.set('BOOT_ORDER', [...order, bootname].join(' '));
    } else {
      // RAUC's mark-bad: out of BOOT_ORDER, no attempts left.
      env.vars.set('BOOT_ORDER', order.filter((b) => b !== bootname).join(' '));
      env.vars.set(`BOOT_${bootname}_LEFT`, '0');
    }
    env.vars.delete(`BOOT_${bootname}_TRIAL`);
    await this.write(env);
  }
}

/**
 * The `uboot` backend factory.
 * @example
 * const bl = ubootBootloader({
 *   root: '/', bootnames: ['A', 'B'], attempts: 3,
 *   options: { env: '/dev/mmcblk0', offset: 0x3f8000, size: 0x4000, 'redundant-offset': 0x3fc000 },
 * });
 * await bl.setPrimary('B', 3);
 */
export const ubootBootloader: BootloaderFactory = (ctx) => new UbootBootloader(ctx);
