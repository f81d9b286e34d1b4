/**
 * Which slot the running system was booted from. Sources, first match wins:
 * 1. `FERRY_BOOTED_SLOT` in the environment (tests, file-backed demo devices);
 * 2. `ferry.slot=<bootname or slot name>` on the kernel command line;
 * 3. RAUC's `rauc.slot=<bootname>` on the kernel command line;
 * 4. `root=/dev/...` / `root=PARTLABEL=...` (PARTUUID, UUID, LABEL) matched against slot devices;
 * 5. the device mounted at `/` (`/proc/self/mountinfo`, through dm/verity to the devices below
 *    it) matched against the slot devices' device numbers.
 *
 * An explicit marker (1-3) naming no bootable slot is BOOTLOADER_SLOT_UNKNOWN, not a fall-through:
 * guessing from the root device after the bootloader said something else could make the agent
 * write over the running system. Only bootable slots are ever returned.
 */
import { createReadStream } from 'node:fs';
import { open, readdir, readFile, realpath, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { FerryError, withContext } from '@ferry/core';
import { bootableSlots, type SlotConfig, type SystemConfig } from './config.ts';

/** Where the answer came from. */
export type BootedSource = 'cmdline' | 'rauc-cmdline' | 'root-device' | 'env';

export interface BootedSlot {
  slot: SlotConfig;
  source: BootedSource;
}

/** The kernel accepts at most a few KiB; read no more than this. */
const MAX_CMDLINE_BYTES = 64 * 1024;

/**
 * Parses a kernel command line as the kernel does: whitespace-separated, double quotes group
 * (and are removed), `--` ends the kernel's part. Repeated keys: the last wins. A bare flag maps
 * to ''.
 * @example
 * parseCmdline('root=/dev/vda3 ferry.slot="A" quiet').get('ferry.slot') // 'A'
 */
export function parseCmdline(text: string): Map<string, string> {
  const args = new Map<string, string>();
  const words: string[] = [];
  let word: string | undefined;
  let quoted = false;
  for (const ch of text) {
    if (ch === '"') {
      quoted = !quoted;
      word ??= '';
    } else if (!quoted && /\s/.test(ch)) {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else word = (word ?? '') + ch;
  }
  if (word !== undefined) words.push(word);
  for (const w of words) {
    if (w === '--') break;
    const eq = w.indexOf('=');
    if (eq < 0) args.set(w, '');
    else args.set(w.slice(0, eq), w.slice(eq + 1));
  }
  return args;
}

async function readCmdline(root: string): Promise<string> {
  const path = join(root, 'proc/cmdline');
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw withContext(`reading ${path}`, e);
  }
  try {
    const buf = Buffer.alloc(MAX_CMDLINE_BYTES);
    let n = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, n, buf.length - n, n);
      n += bytesRead;
      if (bytesRead === 0 || n === buf.length) break;
    }
    return buf.subarray(0, n).toString('utf8');
  } finally {
    await fh.close();
  }
}

function byMarker(c: SystemConfig, value: string, what: string, slotNames: boolean): SlotConfig {
  const bootable = bootableSlots(c);
  const slot =
    bootable.find((s) => s.bootname === value) ??
    (slotNames ? bootable.find((s) => s.name === value) : undefined);
  if (slot) return slot;
  throw new FerryError(
    'BOOTLOADER_SLOT_UNKNOWN',
    `${what} names '${value.slice(0, 80)}', which is no bootable slot (have ${bootable.map((s) => `${s.bootname} = ${s.name}`).join(', ')})`,
  );
}

const ROOT_TAGS: Record<string, string> = {
  PARTLABEL: 'by-partlabel',
  PARTUUID: 'by-partuuid',
  UUID: 'by-uuid',
  LABEL: 'by-label',
};

/** The device path a `root=` value names, or undefined for forms Ferry does not follow. */
function rootParamPath(value: string): string | undefined {
  if (value.startsWith('/dev/')) return value.split('/').includes('..') ? undefined : value;
  const eq = value.indexOf('=');
  const dir = ROOT_TAGS[value.slice(0, eq)];
  const tag = value.slice(eq + 1);
  if (eq < 0 || dir === undefined || tag === '' || tag.includes('/')) return undefined;
  return `/dev/disk/${dir}/${value.startsWith('PARTUUID=') ? tag.toLowerCase() : tag}`;
}

const realOrUndefined = (p: string) => realpath(p).catch(() => undefined);

/** The one bootable slot `pick` matches; none or several (slots sharing a disk) is no answer. */
async function onlyMatch(
  c: SystemConfig,
  pick: (s: SlotConfig) => Promise<boolean>,
): Promise<SlotConfig | undefined> {
  const hits: SlotConfig[] = [];
  for (const s of bootableSlots(c)) if (await pick(s)) hits.push(s);
  return hits.length === 1 ? hits[0] : undefined;
}

async function byRootParam(c: SystemConfig, value: string): Promise<SlotConfig | undefined> {
  const rel = rootParamPath(value);
  if (rel === undefined) return undefined;
  const path = join(c.root, rel);
  const real = await realOrUndefined(path);
  return onlyMatch(
    c,
    async (s) =>
      s.device === path || (real !== undefined && real === (await realOrUndefined(s.device))),
  );
}

/** `major:minor` of a block device, or undefined for anything else. */
async function devNumber(path: string): Promise<string | undefined> {
  const st = await stat(path, { bigint: true }).catch(() => undefined);
  if (!st?.isBlockDevice()) return undefined;
  const major = ((st.rdev >> 8n) & 0xfffn) | ((st.rdev >> 32n) & ~0xfffn);
  const minor = (st.rdev & 0xffn) | ((st.rdev >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

/** `major:minor` of the filesystem mounted at `/` (the last mount there wins). */
async function rootMountDevice(root: string): Promise<string | undefined> {
  const lines = createInterface({
    input: createReadStream(join(root, 'proc/self/mountinfo')),
    crlfDelay: Infinity,
  });
  let dev: string | undefined;
  try {
    // Fields: mount-id parent-id major:minor root mount-point options ...
    for await (const line of lines) {
      const f = line.split(' ');
      if (f[4] === '/' && /^[0-9]+:[0-9]+$/.test(f[2] ?? '')) dev = f[2];
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw withContext(`reading ${join(root, 'proc/self/mountinfo')}`, e);
  }
  return dev;
}

/** `dev` and every device below it (dm-verity, dm-crypt, ...), from /sys/dev/block. */
async function withLowerDevices(root: string, dev: string, depth = 0): Promise<string[]> {
  const slaves = join(root, 'sys/dev/block', dev, 'slaves');
  const names = depth < 8 ? await readdir(slaves).catch(() => []) : [];
  const out = [dev];
  for (const name of names) {
    const lower = (await readFile(join(slaves, name, 'dev'), 'utf8').catch(() => '')).trim();
    if (/^[0-9]+:[0-9]+$/.test(lower))
      out.push(...(await withLowerDevices(root, lower, depth + 1)));
  }
  return out;
}

async function byMountedRoot(c: SystemConfig): Promise<SlotConfig | undefined> {
  const dev = await rootMountDevice(c.root);
  if (dev === undefined) return undefined;
  const devs = new Set(await withLowerDevices(c.root, dev));
  return onlyMatch(c, async (s) => devs.has((await devNumber(s.device)) ?? ''));
}

/**
 * Finds the booted slot (sources and precedence in the file comment). Undefined when no source
 * identifies one (booted from elsewhere: a rescue system, the network, an overlay root);
 * BOOTLOADER_SLOT_UNKNOWN when an explicit marker names a slot that is not configured.
 * @example
 * const booted = await detectBootedSlot(config);
 * if (!booted) throw new FerryError('USAGE', 'cannot tell which slot is running');
 */
export async function detectBootedSlot(
  c: SystemConfig,
  opts: { env?: Record<string, string | undefined> } = {},
): Promise<BootedSlot | undefined> {
  const fromEnv = (opts.env ?? process.env).FERRY_BOOTED_SLOT;
  if (fromEnv) return { slot: byMarker(c, fromEnv, 'FERRY_BOOTED_SLOT', true), source: 'env' };
  const args = parseCmdline(await readCmdline(c.root));
  const ferry = args.get('ferry.slot');
  if (ferry)
    return { slot: byMarker(c, ferry, 'kernel command line ferry.slot', true), source: 'cmdline' };
  const rauc = args.get('rauc.slot');
  if (rauc)
    return {
      slot: byMarker(c, rauc, 'kernel command line rauc.slot', false),
      source: 'rauc-cmdline',
    };
  const rootArg = args.get('root');
  const slot = (rootArg ? await byRootParam(c, rootArg) : undefined) ?? (await byMountedRoot(c));
  return slot ? { slot, source: 'root-device' } : undefined;
}
