/**
 * The `file` bootloader backend: boot selection kept in a JSON file. It is the reference model
 * of the interface (order, per-slot good flag, attempts left), used for file-backed demo devices
 * and as the model the other backends' fixtures are checked against.
 *
 * ```toml
 * [bootloader.file]
 * path = "/var/lib/ferry/boot.json"
 * ```
 */
import { mkdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { FerryError, writeFileAtomic } from '@ferry/core';
import type {
  Bootloader,
  BootloaderContext,
  BootState,
  NextBoot,
  SlotBootState,
} from './bootloader.ts';

interface FileBootState {
  order: string[];
  slots: Record<string, { good: boolean; left?: number }>;
}

function checkOptions(options: Record<string, unknown>): string {
  for (const k of Object.keys(options))
    if (k !== 'path')
      throw new FerryError('CONFIG_INVALID', `[bootloader.file]: unknown key '${k}'`);
  const path = options.path ?? '/var/lib/ferry/boot.json';
  if (typeof path !== 'string' || !path.startsWith('/'))
    throw new FerryError('CONFIG_INVALID', '[bootloader.file] path must be an absolute path');
  return path;
}

/** Simulates one boot of the model: the first good slot in order, consuming one attempt. */
export function bootModel(s: FileBootState): string | undefined {
  for (const b of s.order) {
    const slot = s.slots[b];
    if (!slot?.good) continue;
    if (slot.left === undefined) return b;
    if (slot.left > 0) {
      slot.left--;
      return b;
    }
  }
  return undefined;
}

export class FileBootloader implements Bootloader {
  readonly name = 'file';
  readonly path: string;
  readonly #bootnames: string[];

  constructor(ctx: BootloaderContext) {
    this.path = join(ctx.root, checkOptions(ctx.options));
    this.#bootnames = ctx.bootnames;
  }

  async read(): Promise<FileBootState> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      // No file yet: the first slot is primary and every slot is good, as after provisioning.
      return {
        order: [...this.#bootnames],
        slots: Object.fromEntries(this.#bootnames.map((b) => [b, { good: true }])),
      };
    }
    try {
      const s = JSON.parse(text) as FileBootState;
      if (!Array.isArray(s.order) || typeof s.slots !== 'object')
        throw new Error('missing order or slots');
      return s;
    } catch (e) {
      throw new FerryError('BOOTLOADER_STATE_INVALID', `${this.path}: ${(e as Error).message}`, {
        cause: e,
      });
    }
  }

  async write(s: FileBootState): Promise<void> {
    await mkdir(dirname(this.path), { recursive: true });
    await writeFileAtomic(this.path, `${JSON.stringify(s, null, 2)}\n`);
  }

  /**
   * Plays the bootloader's side of one boot on the stored state (what GRUB's script does for
   * the grub backend): picks the slot as `bootModel` does, consumes an attempt, saves.
   */
  async boot(): Promise<string | undefined> {
    const s = await this.read();
    const booted = bootModel(s);
    await this.write(s);
    return booted;
  }

  #check(bootname: string): void {
    if (!this.#bootnames.includes(bootname))
      throw new FerryError(
        'BOOTLOADER_SLOT_UNKNOWN',
        `no bootable slot named '${bootname}' (have ${this.#bootnames.join(', ')})`,
      );
  }

  async getPrimary(): Promise<string | undefined> {
    const s = await this.read();
    return s.order.find(
      (b) => s.slots[b]?.good && (s.slots[b]?.left === undefined || s.slots[b].left > 0),
    );
  }

  async setPrimary(bootname: string, attempts: number): Promise<void> {
    this.#check(bootname);
    const s = await this.read();
    s.order = [bootname, ...s.order.filter((b) => b !== bootname)];
    s.slots[bootname] = { good: true, left: attempts };
    await this.write(s);
  }

  async getState(bootname: string): Promise<BootState> {
    this.#check(bootname);
    const slot = (await this.read()).slots[bootname];
    const good = slot?.good === true && (slot.left === undefined || slot.left > 0);
    return {
      state: good ? 'good' : 'bad',
      ...(slot?.left !== undefined ? { attemptsLeft: slot.left } : {}),
    };
  }

  async setState(bootname: string, state: SlotBootState): Promise<void> {
    this.#check(bootname);
    const s = await this.read();
    s.slots[bootname] = state === 'good' ? { good: true } : { good: false, left: 0 };
    if (!s.order.includes(bootname)) s.order.push(bootname);
    await this.write(s);
  }

  /** The slot `bootModel` would boot next, and its attempts left after it; nothing is written. */
  async nextBoot(): Promise<NextBoot> {
    const s = await this.read();
    const bootname = bootModel(s);
    const left = bootname !== undefined ? s.slots[bootname]?.left : undefined;
    return {
      ...(bootname !== undefined ? { bootname } : {}),
      ...(left !== undefined ? { attemptsLeft: left } : {}),
    };
  }

  /** One boot of `bootModel` for `bootname` (an attempt consumed); resolves to the undo. */
  async countBootAttempt(bootname: string): Promise<() => Promise<void>> {
    this.#check(bootname);
    const s = await this.read();
    const before = s.slots[bootname]?.left;
    const booted = bootModel(s);
    if (booted !== bootname)
      throw new FerryError(
        'KEXEC_NO_TARGET',
        `the bootloader would boot ${booted ?? 'no slot'} next, not ${bootname}`,
      );
    await this.write(s);
    return async () => {
      const now = await this.read();
      const slot = now.slots[bootname];
      if (slot && before !== undefined) slot.left = before;
      await this.write(now);
    };
  }
}
