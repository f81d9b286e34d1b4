/**
 * What the tool-driven bootloader backends (custom, barebox, efi) share: a bounded, timed runner
 * for their tools (their output is untrusted), option and bootname checks, tool path lookup.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { FerryError } from '@ferry/core';

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
