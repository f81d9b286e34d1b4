/**
 * The `custom` bootloader backend: an executable that speaks RAUC's custom-backend verbs
 * (`get-primary`, `set-primary <b>`, `get-state <b>`, `set-state <b> good|bad`, `get-current`),
 * called exactly as RAUC calls it (verb and bootname as argv, answer on stdout). Ferry adds
 * environment variables because RAUC's verbs carry no attempt count. Its tool runner is
 * `runBootTool` in bootloader-tool.ts.
 *
 * ```toml
 * [bootloader.custom]
 * path = "/usr/lib/ferry/boot-backend"
 * timeout = 30
 * ```
 */
import { join } from 'node:path';
import { FerryError } from '@ferry/core';
import type {
  Bootloader,
  BootloaderContext,
  BootloaderFactory,
  BootState,
  SlotBootState,
} from './bootloader.ts';
import { checkBootname, checkKeys, runBootTool } from './bootloader-tool.ts';

function parseOptions(ctx: BootloaderContext): { path: string; timeoutMs: number } {
  checkKeys('custom', ctx.options, ['path', 'timeout']);
  const { path, timeout = 30 } = ctx.options;
  if (typeof path !== 'string' || !path.startsWith('/'))
    throw new FerryError('CONFIG_INVALID', '[bootloader.custom] path must be an absolute path');
  if (typeof timeout !== 'number' || !Number.isInteger(timeout) || timeout < 1 || timeout > 3600)
    throw new FerryError('CONFIG_INVALID', '[bootloader.custom] timeout must be 1..3600 seconds');
  return { path: join(ctx.root, path), timeoutMs: timeout * 1000 };
}

/** First line of a verb's answer, trimmed as RAUC does (g_strstrip). */
function firstLine(out: string): string {
  return (out.split('\n')[0] ?? '').trim();
}

export class CustomBootloader implements Bootloader {
  readonly name = 'custom';
  readonly path: string;
  readonly #ctx: BootloaderContext;
  readonly #timeoutMs: number;

  constructor(ctx: BootloaderContext) {
    const o = parseOptions(ctx);
    this.path = o.path;
    this.#timeoutMs = o.timeoutMs;
    this.#ctx = ctx;
  }

  #run(args: string[], attempts = this.#ctx.attempts): Promise<string> {
    return runBootTool(this.path, args, {
      timeoutMs: this.#timeoutMs,
      maxOutput: 64 * 1024,
      env: {
        FERRY_BOOT_ATTEMPTS: String(attempts),
        FERRY_BOOT_DEFAULT_ATTEMPTS: String(this.#ctx.attempts),
        FERRY_BOOTNAMES: this.#ctx.bootnames.join(' '),
        FERRY_ROOT: this.#ctx.root,
      },
    });
  }

  #bootnameOrUndefined(verb: string, answer: string): string | undefined {
    if (answer === '') return undefined;
    if (!this.#ctx.bootnames.includes(answer))
      throw new FerryError(
        'BOOTLOADER_STATE_INVALID',
        `${this.path} ${verb}: '${answer.slice(0, 64)}' is not a configured bootname`,
      );
    return answer;
  }

  async getPrimary(): Promise<string | undefined> {
    return this.#bootnameOrUndefined('get-primary', firstLine(await this.#run(['get-primary'])));
  }

  async setPrimary(bootname: string, attempts: number): Promise<void> {
    checkBootname(this.#ctx.bootnames, bootname);
    await this.#run(['set-primary', bootname], attempts);
  }

  async getState(bootname: string): Promise<BootState> {
    checkBootname(this.#ctx.bootnames, bootname);
    const answer = firstLine(await this.#run(['get-state', bootname]));
    // RAUC's answer is exactly good|bad; Ferry also accepts "good <attempts left>".
    const m = /^(good|bad)(?:\s+(\d{1,6}))?$/.exec(answer);
    if (!m)
      throw new FerryError(
        'BOOTLOADER_STATE_INVALID',
        `${this.path} get-state ${bootname}: expected good or bad, got '${answer.slice(0, 64)}'`,
      );
    return {
      state: m[1] as SlotBootState,
      ...(m[2] !== undefined ? { attemptsLeft: Number(m[2]) } : {}),
    };
  }

  async setState(bootname: string, state: SlotBootState): Promise<void> {
    checkBootname(this.#ctx.bootnames, bootname);
    await this.#run(['set-state', bootname, state]);
  }

  async getCurrent(): Promise<string | undefined> {
    return this.#bootnameOrUndefined('get-current', firstLine(await this.#run(['get-current'])));
  }
}

/** Factory for BOOTLOADERS: `custom`. */
export const customBootloader: BootloaderFactory = (ctx) => new CustomBootloader(ctx);
