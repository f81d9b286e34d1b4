/**
 * U-Boot environment images, byte-compatible with U-Boot's saveenv and libubootenv's
 * fw_setenv: a little-endian CRC32 of the data area, a flag byte when the environment is
 * redundant, then `name=value` entries separated by NUL, ended by an empty entry, padded with
 * NUL to the environment size. Entries are written sorted by name, as both tools do.
 *
 * A redundant environment has two copies; the valid one with the higher flag (255 -> 0 wraps)
 * is current. A write goes to the other copy with flag + 1 and leaves the current one intact,
 * so a power cut during the write leaves one valid copy. Writes are in place (a partition
 * cannot be renamed over) and fsynced. Flags are counters, as for files, block devices and
 * eMMC; raw NOR flash (MTD, boolean flags, erase before write) is not supported.
 *
 * Values are byte strings (latin1), so unknown variables survive untouched.
 *
 * @example
 * const layout = { size: 0x4000, copies: [{ path: '/dev/mmcblk0', offset: 0x3f8000 }] };
 * const env = await readUbootEnv(layout);
 * env.vars.set('BOOT_ORDER', 'B A');
 * await writeUbootEnv(layout, env.vars, env);
 */
import { open } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { FerryError } from '@ferry/core';

/** Where the environment lives: one copy, or two for a redundant environment. */
export interface UbootEnvLayout {
  /** Bytes per copy, CRC and flag included (CONFIG_ENV_SIZE). */
  size: number;
  copies: Array<{ path: string; offset: number }>;
}

/** What was read: the variables, and which copy with which flag they came from. */
export interface UbootEnvSnapshot {
  vars: Map<string, string>;
  copy: number;
  flag: number;
}

/** Larger than any real environment; bounds what a corrupt config makes Ferry allocate. */
export const UBOOT_ENV_MAX_SIZE = 16 << 20;

/** Whether every character is one byte other than NUL (values are C strings). */
function isByteString(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0 || c > 0xff) return false;
  }
  return true;
}

function invalid(message: string): FerryError {
  return new FerryError('BOOTLOADER_STATE_INVALID', `U-Boot environment: ${message}`);
}

/** Checks a layout's size and copy count (CONFIG_INVALID). */
export function checkUbootEnvLayout(layout: UbootEnvLayout): void {
  if (!Number.isInteger(layout.size) || layout.size < 8 || layout.size > UBOOT_ENV_MAX_SIZE)
    throw new FerryError('CONFIG_INVALID', `U-Boot env size ${layout.size} is out of range`);
  if (layout.copies.length < 1 || layout.copies.length > 2)
    throw new FerryError('CONFIG_INVALID', 'a U-Boot environment has one or two copies');
  for (const c of layout.copies)
    if (!Number.isSafeInteger(c.offset) || c.offset < 0)
      throw new FerryError('CONFIG_INVALID', `U-Boot env offset ${c.offset} is out of range`);
}

/** Encodes one copy: CRC, optional flag, sorted entries, NUL padding. */
export function encodeUbootEnv(vars: Map<string, string>, size: number, flag?: number): Buffer {
  const header = flag === undefined ? 4 : 5;
  const out = Buffer.alloc(size);
  let p = header;
  for (const name of [...vars.keys()].sort()) {
    const value = vars.get(name) ?? '';
    if (name === '' || name.includes('=') || !isByteString(name + value))
      throw invalid(`cannot store variable ${JSON.stringify(name)}`);
    // U-Boot reads `name=` as "delete name": an empty value is an unset variable.
    if (value === '') continue;
    const entry = `${name}=${value}\0`;
    if (p + entry.length + 1 > size)
      throw invalid(`variables do not fit in ${size - header} bytes`);
    p += out.write(entry, p, 'latin1');
  }
  if (flag !== undefined) out[4] = flag & 0xff;
  out.writeUInt32LE(crc32(out.subarray(header)), 0);
  return out;
}

/** Decodes one copy; undefined when its CRC does not match or its entries are unterminated. */
export function decodeUbootEnv(
  image: Uint8Array,
  redundant: boolean,
): { vars: Map<string, string>; flag: number } | undefined {
  const header = redundant ? 5 : 4;
  const buf = Buffer.from(image.buffer, image.byteOffset, image.byteLength);
  if (buf.length <= header || buf.readUInt32LE(0) !== crc32(buf.subarray(header))) return undefined;
  const vars = new Map<string, string>();
  let p = header;
  while (p < buf.length && buf[p] !== 0) {
    const end = buf.indexOf(0, p);
    if (end < 0) return undefined;
    const entry = buf.toString('latin1', p, end);
    const eq = entry.indexOf('=');
    // As libubootenv: an entry without '=' is skipped; a later duplicate wins.
    if (eq > 0) vars.set(entry.slice(0, eq), entry.slice(eq + 1));
    p = end + 1;
  }
  if (p >= buf.length) return undefined;
  return { vars, flag: redundant ? (buf[4] ?? 0) : 0 };
}

async function readCopy(path: string, offset: number, size: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(size);
    const { bytesRead } = await fh.read(buf, 0, size, offset);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** U-Boot's choice between two valid copies: the higher flag, with 255 -> 0 wrapping. */
function newer(f0: number, f1: number): number {
  if (f0 === 255 && f1 === 0) return 1;
  if (f1 === 255 && f0 === 0) return 0;
  return f1 > f0 ? 1 : 0;
}

/** Reads the current copy; BOOTLOADER_STATE_INVALID when no copy is valid. */
export async function readUbootEnv(layout: UbootEnvLayout): Promise<UbootEnvSnapshot> {
  checkUbootEnvLayout(layout);
  const redundant = layout.copies.length > 1;
  const copies = [];
  for (const c of layout.copies) {
    const data = await readCopy(c.path, c.offset, layout.size);
    copies.push(data.length === layout.size ? decodeUbootEnv(data, redundant) : undefined);
  }
  const [c0, c1] = copies;
  if (!c0 && !c1) {
    const where = layout.copies.map((c) => `${c.path}@${c.offset}`).join(', ');
    throw invalid(`no copy has a valid CRC (${where})`);
  }
  const copy = c0 && c1 ? newer(c0.flag, c1.flag) : c0 ? 0 : 1;
  const chosen = (copy === 0 ? c0 : c1) as NonNullable<typeof c0>;
  return { vars: chosen.vars, copy, flag: chosen.flag };
}

async function writeCopy(path: string, offset: number, data: Buffer): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.write(data, 0, data.length, offset);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Writes `vars` after a read: over the only copy, or to the copy that was not current with
 * flag + 1, leaving the current copy as it was.
 */
export async function writeUbootEnv(
  layout: UbootEnvLayout,
  vars: Map<string, string>,
  previous: Pick<UbootEnvSnapshot, 'copy' | 'flag'>,
): Promise<void> {
  checkUbootEnvLayout(layout);
  const redundant = layout.copies.length > 1;
  const copy = redundant ? 1 - previous.copy : 0;
  const target = layout.copies[copy] as { path: string; offset: number };
  const data = encodeUbootEnv(vars, layout.size, redundant ? previous.flag + 1 : undefined);
  await writeCopy(target.path, target.offset, data);
}

/**
 * Provisions an environment: every copy written with `vars` (copy 0 current, flag 1, as
 * mkenvimage -r makes it). For images and tests; the agent only uses writeUbootEnv.
 */
export async function formatUbootEnv(
  layout: UbootEnvLayout,
  vars: Map<string, string>,
): Promise<void> {
  checkUbootEnvLayout(layout);
  const redundant = layout.copies.length > 1;
  for (const [i, c] of layout.copies.entries())
    await writeCopy(
      c.path,
      c.offset,
      encodeUbootEnv(vars, layout.size, redundant ? 1 - i : undefined),
    );
}

/** Parses a number as strtoul(s, NULL, 0) does: 0x hex, leading-0 octal, else decimal. */
export function parseCNumber(s: string): number | undefined {
  if (/^0[xX][0-9a-fA-F]+$/.test(s)) return Number.parseInt(s.slice(2), 16);
  if (/^0[0-7]*$/.test(s)) return Number.parseInt(s, 8);
  if (/^[1-9][0-9]*$/.test(s)) return Number(s);
  return undefined;
}

/** Parses a number as sscanf's %lx does: hexadecimal, with or without 0x. */
function parseHex(s: string): number | undefined {
  return /^(0[xX])?[0-9a-fA-F]{1,12}$/.test(s)
    ? Number.parseInt(s.replace(/^0[xX]/, ''), 16)
    : undefined;
}

/**
 * Parses fw_env.config (`device offset size [sector-size [sectors]]`, one line per copy, '#'
 * comments) as U-Boot's fw_env and libubootenv do: the offset like strtoul base 0, the size
 * always hexadecimal (`16384` is 0x16384); sector fields are accepted and ignored.
 * CONFIG_INVALID on anything else.
 */
export function parseFwEnvConfig(text: string): UbootEnvLayout {
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  const bad = (why: string) => new FerryError('CONFIG_INVALID', `fw_env.config: ${why}`);
  if (lines.length < 1 || lines.length > 2) throw bad('needs one or two device lines');
  const copies: UbootEnvLayout['copies'] = [];
  const sizes = new Set<number>();
  for (const line of lines) {
    const [path, off, size, ...rest] = line.split(/\s+/);
    const offset = parseCNumber(off ?? '');
    const n = parseHex(size ?? '');
    if (!path || offset === undefined || n === undefined || rest.length > 2)
      throw bad(`cannot parse line '${line}'`);
    copies.push({ path, offset });
    sizes.add(n);
  }
  if (sizes.size !== 1) throw bad('the two copies have different sizes');
  const layout = { size: [...sizes][0] ?? 0, copies };
  checkUbootEnvLayout(layout);
  return layout;
}
