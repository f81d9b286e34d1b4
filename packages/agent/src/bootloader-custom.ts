/**
 * The `custom` bootloader backend: an executable that speaks RAUC's custom-backend verbs
 * (`get-primary`, `set-primary <b>`, `get-state <b>`, `set-state <b> good|bad`, `get-current`),
 * called exactly as RAUC calls it (verb and bootname as argv, answer on stdout). Ferry adds
 * environment variables because RAUC's verbs carry no attempt count. Also home of `runBootTool`,
 * the bounded, timed tool runner the barebox and efi backends share.
 *
 * ```toml
 * [bootloader.custom]
 * path = "/usr/lib/ferry/boot-backend"
 * timeout = 30
 * ```
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { FerryError } from '@ferry/core';
import type {
  Bootloader,
  BootloaderContext,
  BootloaderFactory,
  BootState,
  SlotBootState,
} from './bootloader.ts';

/** Bytes of stdout a bootloader tool may print before it is killed (untrusted output). */
export const BOOT_TOOL_MAX_OUTPUT = 1 << 20;

export interface BootToolOptions {
  /** Extra environment on top of the agent's. */
  env?: Record<string, string>;
  timeoutMs?: number;
  maxOutput?: number;
}

/**
 * Runs a bootloader tool and returns its stdout. A missing tool is TOOL_MISSING; a non-zero exit,
 * a signal, a timeout or output over the limit is BOOTLOADER_FAILED naming the last stderr line.
 * @example
 * const out = await runBootTool('efibootmgr', []);
 */
export function runBootTool(
  file: string,
  args: string[],
  o: BootToolOptions = {},
): Promise<string> {
  const timeoutMs = o.timeoutMs ?? 30_000;
  const max = o.maxOutput ?? BOOT_TOOL_MAX_OUTPUT;
  const what = `${file} ${args.join(' ')}`.trim();
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      env: { ...process.env, ...o.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    const out: Buffer[] = [];
    let size = 0;
    let errTail = '';
    let failure: string | undefined;
    const kill = (why: string) => {
      failure ??= why;
      try {
        process.kill(-child.pid!, 'SIGKILL'); // the tool's whole process group
      } catch {
        child.kill('SIGKILL');
      }
    };
    child.stdout.on('data', (d: Buffer) => {
      size += d.length;
      if (size > max) kill(`printed more than ${max} bytes`);
      else out.push(d);
    });
    child.stderr.on('data', (d: Buffer) => {
      errTail = (errTail + d.toString()).slice(-4096);
    });
    const timer = setTimeout(() => kill(`timed out after ${timeoutMs} ms`), timeoutMs);
    child.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const code = e.code === 'ENOENT' ? 'TOOL_MISSING' : 'BOOTLOADER_FAILED';
      reject(new FerryError(code, `${what}: ${e.message}`, { cause: e }));
    });
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      const last = errTail.trim().split('\n').at(-1) ?? '';
      if (failure) return reject(new FerryError('BOOTLOADER_FAILED', `${what}: ${failure}`));
      if (status === 0) return resolve(Buffer.concat(out).toString('utf8'));
      const how = signal ? `killed by ${signal}` : `exit status ${status}`;
      reject(new FerryError('BOOTLOADER_FAILED', `${what}: ${how}${last ? `: ${last}` : ''}`));
    });
  });
}

/** Resolves a tool option: a bare name is looked up on PATH, an absolute path against the root. */
export function toolPath(section: string, root: string, value: unknown, fallback: string): string {
  const v = value ?? fallback;
  if (typeof v !== 'string' || v === '' || (v.includes('/') && !v.startsWith('/')))
    throw new FerryError(
      'CONFIG_INVALID',
      `[bootloader.${section}] tool must be a command name or an absolute path`,
    );
  return v.startsWith('/') ? join(root, v) : v;
}

/** Refuses keys a backend does not know (RAUC refuses leftover keys too). */
export function checkKeys(
  section: string,
  options: Record<string, unknown>,
  known: string[],
): void {
  for (const k of Object.keys(options))
    if (!known.includes(k))
      throw new FerryError('CONFIG_INVALID', `[bootloader.${section}]: unknown key '${k}'`);
}

/** Refuses a bootname that is not configured. */
export function checkBootname(bootnames: string[], bootname: string): void {
  if (!bootnames.includes(bootname))
    throw new FerryError(
      'BOOTLOADER_SLOT_UNKNOWN',
      `no bootable slot named '${bootname}' (have ${bootnames.join(', ')})`,
    );
}

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
