/**
 * The `grub` bootloader backend: boot selection in the GRUB environment block (grubenv), read at
 * every boot by contrib/grub/ferry-ab.cfg (scheme "left") or by RAUC's contrib/grub.conf
 * (scheme "rauc"). Variable names are RAUC's, so RAUC tooling reads the same state:
 *
 * - `ORDER`: bootnames, space-separated, primary first.
 * - `<X>_OK`: 1 while slot X may boot, 0 once it is marked bad.
 * - `<X>_LEFT` (scheme "left"): boot attempts left while X is on trial, decimal 0..9; unset once
 *   X is committed. The boot script decrements it before booting X and skips X at 0.
 * - `<X>_TRY` (scheme "rauc"): RAUC's one-try flag; the boot script sets it to 1 when it boots X
 *   and skips X while it is 1, so userspace must mark the booted slot good on every boot.
 *
 * ```toml
 * [bootloader.grub]
 * env = "/boot/grub/grubenv"   # default
 * scheme = "left"              # or "rauc"
 * ```
 */
import { join } from 'node:path';
import { FerryError } from '@ferry/core';
import type {
  Bootloader,
  BootloaderContext,
  BootloaderFactory,
  BootState,
  NextBoot,
  SlotBootState,
} from './bootloader.ts';
import { grubBootChoice } from './grub-boot-choice.ts';
import { GrubEnv, readGrubEnv, writeGrubEnv } from './grub-env.ts';

/** GRUB script has no arithmetic: ferry-ab.cfg counts down with an if-chain from 9. */
export const GRUB_MAX_ATTEMPTS = 9;

export type GrubScheme = 'left' | 'rauc';

interface GrubOptions {
  env: string;
  scheme: GrubScheme;
}

function checkOptions(ctx: BootloaderContext): GrubOptions {
  const { options } = ctx;
  for (const k of Object.keys(options))
    if (k !== 'env' && k !== 'scheme')
      throw new FerryError('CONFIG_INVALID', `[bootloader.grub]: unknown key '${k}'`);
  const env = options.env ?? '/boot/grub/grubenv';
  if (typeof env !== 'string' || !env.startsWith('/'))
    throw new FerryError('CONFIG_INVALID', '[bootloader.grub] env must be an absolute path');
  const scheme = options.scheme ?? 'left';
  if (scheme !== 'left' && scheme !== 'rauc')
    throw new FerryError('CONFIG_INVALID', '[bootloader.grub] scheme must be "left" or "rauc"');
  for (const b of ctx.bootnames)
    if (!/^[A-Za-z0-9_]+$/.test(b))
      throw new FerryError(
        'CONFIG_INVALID',
        `[bootloader.grub]: bootname '${b}' cannot be part of a GRUB variable name`,
      );
  return { env, scheme };
}

/** Whether ferry-ab.cfg boots a slot with this X_LEFT: unset or empty (committed), or "1".."9". */
function leftBootable(left: string | undefined): boolean {
  return left === undefined || left === '' || /^[1-9]$/.test(left);
}

/** Splits ORDER as GRUB's `for SLOT in $ORDER` does. */
function splitOrder(order: string): string[] {
  return order.split(/[ \t\n]+/).filter((b) => b !== '');
}

export class GrubBootloader implements Bootloader {
  readonly name = 'grub';
  readonly path: string;
  readonly scheme: GrubScheme;
  readonly #bootnames: string[];

  constructor(ctx: BootloaderContext) {
    const o = checkOptions(ctx);
    this.path = join(ctx.root, o.env);
    this.scheme = o.scheme;
    this.#bootnames = ctx.bootnames;
  }

  /** The environment; a missing file reads as a freshly created, empty block. */
  async read(): Promise<GrubEnv> {
    return (await readGrubEnv(this.path)) ?? GrubEnv.create();
  }

  async write(env: GrubEnv): Promise<void> {
    await writeGrubEnv(this.path, env);
  }

  /** ORDER as the boot script sees it: unset means the configured order (its default). */
  order(env: GrubEnv): string[] {
    const order = env.get('ORDER');
    return order === undefined ? [...this.#bootnames] : splitOrder(order);
  }

  #check(bootname: string): void {
    if (!this.#bootnames.includes(bootname))
      throw new FerryError(
        'BOOTLOADER_SLOT_UNKNOWN',
        `no bootable slot named '${bootname}' (have ${this.#bootnames.join(', ')})`,
      );
  }

  #good(env: GrubEnv, b: string): boolean {
    if (!this.order(env).includes(b)) return false;
    if (this.scheme === 'rauc')
      return Number(env.get(`${b}_OK`) ?? '0') === 1 && Number(env.get(`${b}_TRY`) ?? '0') === 0;
    return (env.get(`${b}_OK`) ?? '1') === '1' && leftBootable(env.get(`${b}_LEFT`));
  }

  async getPrimary(): Promise<string | undefined> {
    const env = await this.read();
    return this.order(env).find((b) => this.#bootnames.includes(b) && this.#good(env, b));
  }

  async setPrimary(bootname: string, attempts: number): Promise<void> {
    this.#check(bootname);
    if (!Number.isInteger(attempts) || attempts < 1)
      throw new FerryError('CONFIG_INVALID', `boot attempts must be at least 1, not ${attempts}`);
    const env = await this.read();
    env.set('ORDER', [bootname, ...this.order(env).filter((b) => b !== bootname)].join(' '));
    env.set(`${bootname}_OK`, '1');
    if (this.scheme === 'rauc') env.set(`${bootname}_TRY`, '0');
    else env.set(`${bootname}_LEFT`, String(Math.min(attempts, GRUB_MAX_ATTEMPTS)));
    await this.write(env);
  }

  async getState(bootname: string): Promise<BootState> {
    this.#check(bootname);
    const env = await this.read();
    const state = this.#good(env, bootname) ? 'good' : 'bad';
    const left = this.scheme === 'left' ? env.get(`${bootname}_LEFT`) : undefined;
    if (left === undefined || left === '') return { state };
    return { state, attemptsLeft: /^\d{1,9}$/.test(left) ? Number(left) : 0 };
  }

  async setState(bootname: string, state: SlotBootState): Promise<void> {
    this.#check(bootname);
    const env = await this.read();
    env.set(`${bootname}_OK`, state === 'good' ? '1' : '0');
    if (this.scheme === 'rauc') env.set(`${bootname}_TRY`, '0');
    else if (state === 'good') env.delete(`${bootname}_LEFT`);
    const order = this.order(env);
    if (state === 'good' && !order.includes(bootname))
      env.set('ORDER', [...order, bootname].join(' '));
    await this.write(env);
  }

  /** What the boot script (ferry-ab.cfg or RAUC's) would boot next; nothing is written. */
  async nextBoot(): Promise<NextBoot> {
    const c = grubBootChoice(
      Object.fromEntries((await this.read()).entries()),
      this.#bootnames,
      this.scheme,
    );
    return {
      ...(c.bootname !== undefined ? { bootname: c.bootname } : {}),
      ...(c.attemptsLeft !== undefined ? { attemptsLeft: c.attemptsLeft } : {}),
    };
  }

  /**
   * Saves what the boot script's `save_env` saves when it boots `bootname` (scheme "left": X_LEFT
   * minus one; "rauc": X_TRY=1 on the slots it walks past); resolves to the undo.
   */
  async countBootAttempt(bootname: string): Promise<() => Promise<void>> {
    this.#check(bootname);
    const env = await this.read();
    const before = Object.fromEntries(env.entries());
    const c = grubBootChoice(before, this.#bootnames, this.scheme);
    if (c.bootname !== bootname)
      throw new FerryError(
        'KEXEC_NO_TARGET',
        `GRUB would boot ${c.bootname ?? 'no slot'} next, not ${bootname}`,
      );
    for (const [k, v] of Object.entries(c.saves)) env.set(k, v);
    await this.write(env);
    return async () => {
      const now = await this.read();
      for (const k of Object.keys(c.saves)) {
        const v = before[k];
        if (v === undefined) now.delete(k);
        else now.set(k, v);
      }
      await this.write(now);
    };
  }
}

/**
 * The `grub` backend factory.
 * @example
 * const bl = grubBootloader({ root: '/', bootnames: ['A', 'B'], options: {}, attempts: 3 });
 * await bl.setPrimary('B', 3);
 */
export const grubBootloader: BootloaderFactory = (ctx) => new GrubBootloader(ctx);
