/**
 * The `systemd-boot` bootloader backend: Boot Loader Specification Type #1 entries with boot
 * counting in the file name (`ferry-B+3.conf`, systemd's Automatic Boot Assessment). Ferry only
 * renames files, exactly as systemd-boot and systemd-bless-boot do, so either can do each step.
 *
 * The primary is the entry systemd-boot picks by its own sort order: loader.conf says
 * `default ferry-*`, and among the entries that glob matches systemd-boot takes the first by
 * (no tries left last, sort-key, version descending, id descending). setPrimary gives the slot
 * the highest `version`. A per-slot `default` would not do: systemd-boot boots the default entry
 * even when it has no tries left, so there would be no fallback.
 *
 * ```toml
 * [bootloader.systemd-boot]
 * entries = "/boot/loader/entries"
 * loader-conf = "/boot/loader/loader.conf"
 * entry-prefix = "ferry-"
 * sort-key = "ferry"
 * efivars = "/sys/firmware/efi/efivars"
 *
 * # Kernels inside the slots: systemd-boot reads only the ESP, so with `kernel-options` set the
 * # installer copies each new slot's kernel and initramfs there and writes the slot's entry.
 * esp = "/boot"                      # where the ESP is mounted
 * kernel-dir = "ferry"               # directory on the ESP for the kernel files
 * slot-kernel = "/boot/vmlinuz"      # paths inside the slot's image
 * slot-initrd = "/boot/initrd.img"
 * [bootloader.systemd-boot.kernel-options]
 * A = "root=PARTLABEL=rootfs-a ro ferry.slot=A"
 * B = "root=PARTLABEL=rootfs-b ro ferry.slot=B"
 * ```
 */
import { open, readdir, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { FerryError, fsyncDir, writeFileAtomic } from '@ferry/core';
import type {
  Bootloader,
  BootloaderContext,
  BootloaderFactory,
  BootState,
  PrepareSlot,
  SlotBootState,
} from './bootloader.ts';
import { checkBootname, checkKeys } from './bootloader-tool.ts';
import { copyEspKernel, pruneEspKernels, withSlotImage } from './esp-kernel.ts';
import { faultPoint } from './fault.ts';

/** systemd-boot's vendor GUID for its EFI variables (LoaderEntrySelected, ...). */
export const LOADER_GUID = '4a67b082-0a4c-41cf-b6c7-440b29bb8c4f';
const MAX_ENTRY = 64 * 1024;

/** A parsed entry file name `<stem>[+LEFT[-DONE]].conf`. */
export interface EntryName {
  stem: string;
  left?: number;
  done?: number;
}

/** Parses the counter the way systemd-boot does: after the last '+', right before `.conf`. */
export function parseEntryName(file: string): EntryName | undefined {
  if (!file.endsWith('.conf') || file.startsWith('.')) return undefined;
  const base = file.slice(0, -'.conf'.length);
  const plus = base.lastIndexOf('+');
  const m = plus < 0 ? null : /^(\d{1,9})(?:-(\d{1,9}))?$/.exec(base.slice(plus + 1));
  if (!m) return { stem: base };
  return {
    stem: base.slice(0, plus),
    left: Number(m[1]),
    done: m[2] === undefined ? 0 : Number(m[2]),
  };
}

/** The file name for a stem and counter; no counter for a committed ("good") entry. */
export function entryFileName(stem: string, left?: number, done = 0): string {
  return left === undefined ? `${stem}.conf` : `${stem}+${left}${done > 0 ? `-${done}` : ''}.conf`;
}

/** Version order as systemd's strverscmp_improved, for digit runs and plain characters. */
export function verscmp(a: string, b: string): number {
  const seg = (s: string) => s.match(/\d+|\D/g) ?? [];
  const x = seg(a);
  const y = seg(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const p = x[i]!;
    const q = y[i]!;
    const np = /^\d/.test(p);
    const nq = /^\d/.test(q);
    if (np && nq) {
      const d = Number(p) - Number(q);
      if (d !== 0) return Math.sign(d);
    } else if (np !== nq) return np ? 1 : -1;
    else if (p !== q) return p < q ? -1 : 1;
  }
  return Math.sign(x.length - y.length);
}

interface Entry extends EntryName {
  bootname: string;
  file: string;
  sortKey?: string;
  version?: string;
}

/** systemd-boot's entry order (boot_entry_compare): the first good entry boots. */
export function compareEntries(a: Entry, b: Entry): number {
  const bad = Number(a.left === 0) - Number(b.left === 0);
  if (bad !== 0) return bad;
  const keyed = Number(a.sortKey === undefined) - Number(b.sortKey === undefined);
  if (keyed !== 0) return keyed;
  if (a.sortKey !== undefined && b.sortKey !== undefined) {
    if (a.sortKey !== b.sortKey) return a.sortKey < b.sortKey ? -1 : 1;
    const v = -verscmp(a.version ?? '', b.version ?? '');
    if (v !== 0) return v;
  }
  const id = -verscmp(`${a.stem}.conf`.toLowerCase(), `${b.stem}.conf`.toLowerCase());
  if (id !== 0 || a.left === undefined || b.left === undefined) return id;
  return b.left - a.left || (a.done ?? 0) - (b.done ?? 0);
}

function field(text: string, key: string): string | undefined {
  return new RegExp(`^[ \\t]*${key}[ \\t]+(.+?)[ \\t]*$`, 'm').exec(text)?.[1];
}

/** Replaces (or appends) a `key value` line, keeping every other line. */
function setField(text: string, key: string, value: string): string {
  const re = new RegExp(`^[ \\t]*${key}[ \\t].*$`, 'm');
  if (re.test(text)) return text.replace(re, `${key} ${value}`);
  return `${text}${text === '' || text.endsWith('\n') ? '' : '\n'}${key} ${value}\n`;
}

async function readBounded(path: string, max: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(max + 1);
    const { bytesRead } = await fh.read(buf, 0, max + 1, 0);
    if (bytesRead > max)
      throw new FerryError('BOOTLOADER_STATE_INVALID', `${path} is larger than ${max} bytes`);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** Where the installer puts slot kernels on the ESP, when `kernel-options` is configured. */
interface SlotKernels {
  /** ESP mount point (root-resolved) and the kernel directory relative to it. */
  esp: string;
  dir: string;
  kernel: string;
  initrd: string;
  options: Record<string, string>;
}

interface SdOptions {
  entries: string;
  loaderConf: string;
  prefix: string;
  sortKey: string;
  efivars: string;
  kernels?: SlotKernels;
}

function parseKernels(ctx: BootloaderContext, o: Record<string, unknown>): SlotKernels | undefined {
  const bad = (k: string, what: string) =>
    new FerryError('CONFIG_INVALID', `[bootloader.systemd-boot] ${k} ${what}`);
  const table = o['kernel-options'];
  if (table === undefined) {
    for (const k of ['esp', 'kernel-dir', 'slot-kernel', 'slot-initrd'])
      if (o[k] !== undefined) throw bad(k, 'needs [bootloader.systemd-boot.kernel-options]');
    return undefined;
  }
  if (typeof table !== 'object' || table === null || Array.isArray(table))
    throw bad('kernel-options', 'must be a table of bootname = "kernel command line"');
  const options: Record<string, string> = {};
  for (const [b, v] of Object.entries(table as Record<string, unknown>)) {
    if (!ctx.bootnames.includes(b)) throw bad('kernel-options', `names no bootable slot '${b}'`);
    if (typeof v !== 'string' || /[\n\r\0]/.test(v) || v.length > 4096)
      throw bad(`kernel-options.${b}`, 'must be one line of at most 4096 characters');
    options[b] = v.trim();
  }
  for (const b of ctx.bootnames)
    if (options[b] === undefined) throw bad('kernel-options', `lacks slot '${b}'`);
  const abs = (k: string, d: string) => {
    const v = o[k] ?? d;
    if (typeof v !== 'string' || !v.startsWith('/') || v.split('/').includes('..'))
      throw bad(k, 'must be an absolute path without ..');
    return v;
  };
  const dir = o['kernel-dir'] ?? 'ferry';
  if (
    typeof dir !== 'string' ||
    !/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/.test(dir) ||
    dir.split('/').some((p) => p === '.' || p === '..')
  )
    throw bad('kernel-dir', 'must be a relative directory on the ESP (letters, digits, . _ -)');
  return {
    esp: join(ctx.root, abs('esp', '/boot')),
    dir,
    kernel: abs('slot-kernel', '/boot/vmlinuz'),
    initrd: abs('slot-initrd', '/boot/initrd.img'),
    options,
  };
}

function parseOptions(ctx: BootloaderContext): SdOptions {
  const o = ctx.options;
  checkKeys('systemd-boot', o, [
    ...['entries', 'loader-conf', 'entry-prefix', 'sort-key', 'efivars'],
    ...['esp', 'kernel-dir', 'slot-kernel', 'slot-initrd', 'kernel-options'],
  ]);
  const path = (k: string, d: string) => {
    const v = o[k] ?? d;
    if (typeof v !== 'string' || !v.startsWith('/'))
      throw new FerryError(
        'CONFIG_INVALID',
        `[bootloader.systemd-boot] ${k} must be an absolute path`,
      );
    return join(ctx.root, v);
  };
  const word = (k: string, d: string, re: RegExp) => {
    const v = o[k] ?? d;
    if (typeof v !== 'string' || !re.test(v))
      throw new FerryError(
        'CONFIG_INVALID',
        `[bootloader.systemd-boot] ${k} must match ${re.source}`,
      );
    return v;
  };
  // No '+', glob or path characters: the prefix goes into file names and the default glob.
  const prefix = word('entry-prefix', 'ferry-', /^[A-Za-z0-9._-]{1,64}$/);
  for (const b of ctx.bootnames)
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(b))
      throw new FerryError(
        'CONFIG_INVALID',
        `bootname '${b}' cannot be part of an entry file name`,
      );
  const kernels = parseKernels(ctx, o);
  return {
    entries: path('entries', '/boot/loader/entries'),
    loaderConf: path('loader-conf', '/boot/loader/loader.conf'),
    efivars: path('efivars', '/sys/firmware/efi/efivars'),
    prefix,
    sortKey: word('sort-key', 'ferry', /^[A-Za-z0-9._-]{1,64}$/),
    ...(kernels ? { kernels } : {}),
  };
}

export class SystemdBootBootloader implements Bootloader {
  readonly name = 'systemd-boot';
  readonly options: SdOptions;
  readonly #bootnames: string[];

  constructor(ctx: BootloaderContext) {
    this.options = parseOptions(ctx);
    this.#bootnames = ctx.bootnames;
  }

  /** Ferry's entries by bootname; a slot with two entry files is refused. */
  async entries(): Promise<Map<string, Entry>> {
    const out = new Map<string, Entry>();
    for (const file of await readdir(this.options.entries)) {
      const n = parseEntryName(file);
      if (!n?.stem.startsWith(this.options.prefix)) continue;
      const bootname = n.stem.slice(this.options.prefix.length);
      if (!this.#bootnames.includes(bootname)) continue;
      if (out.has(bootname))
        throw new FerryError(
          'BOOTLOADER_STATE_INVALID',
          `two entries for slot ${bootname}: ${out.get(bootname)!.file}, ${file}`,
        );
      const text = (await readBounded(join(this.options.entries, file), MAX_ENTRY)).toString(
        'utf8',
      );
      const sortKey = field(text, 'sort-key');
      const version = field(text, 'version');
      out.set(bootname, {
        ...n,
        bootname,
        file,
        ...(sortKey ? { sortKey } : {}),
        ...(version ? { version } : {}),
      });
    }
    return out;
  }

  async #entry(bootname: string): Promise<{ all: Map<string, Entry>; e: Entry }> {
    checkBootname(this.#bootnames, bootname);
    const all = await this.entries();
    const e = all.get(bootname);
    if (!e)
      throw new FerryError(
        'BOOTLOADER_STATE_INVALID',
        `no boot entry ${this.options.prefix}${bootname}[+N].conf in ${this.options.entries}`,
      );
    return { all, e };
  }

  /** rename(2) in the entries directory, then fsync the directory; the only state change. */
  async #rename(e: Entry, left?: number, done?: number): Promise<Entry> {
    const file = entryFileName(e.stem, left, done);
    if (file !== e.file) {
      await rename(join(this.options.entries, e.file), join(this.options.entries, file));
      await fsyncDir(this.options.entries);
    }
    const { left: _l, done: _d, ...rest } = e;
    return { ...rest, file, ...(left !== undefined ? { left, done: done ?? 0 } : {}) };
  }

  /** loader.conf must say `default <prefix>*` so systemd-boot's order decides (atomic rewrite). */
  async #ensureDefaultGlob(): Promise<void> {
    const text = await readFile(this.options.loaderConf, 'utf8').catch(
      (e: NodeJS.ErrnoException) => {
        if (e.code === 'ENOENT') return '';
        throw e;
      },
    );
    if (text.length > MAX_ENTRY)
      throw new FerryError('BOOTLOADER_STATE_INVALID', `${this.options.loaderConf} is too large`);
    const glob = `${this.options.prefix}*`;
    if (field(text, 'default') !== glob)
      await writeFileAtomic(this.options.loaderConf, setField(text, 'default', glob));
  }

  async getPrimary(): Promise<string | undefined> {
    const sorted = [...(await this.entries()).values()].sort(compareEntries);
    return sorted.find((e) => e.left !== 0)?.bootname;
  }

  async setPrimary(bootname: string, attempts: number): Promise<void> {
    if (!Number.isInteger(attempts) || attempts < 1 || attempts > 999_999_999)
      throw new FerryError('USAGE', `attempts must be a positive integer, got ${attempts}`);
    const { all, e } = await this.#entry(bootname);
    await this.#ensureDefaultGlob();
    // Counter first: a power cut before the version bump leaves a counted, non-primary slot.
    const renamed = await this.#rename(e, attempts, 0);
    const others = [...all.values()].filter((x) => x.bootname !== bootname);
    const top = Math.max(
      0,
      ...others.map((x) => (/^\d{1,9}$/.test(x.version ?? '') ? Number(x.version) : 0)),
    );
    const path = join(this.options.entries, renamed.file);
    let text = (await readBounded(path, MAX_ENTRY)).toString('utf8');
    text = setField(setField(text, 'sort-key', this.options.sortKey), 'version', String(top + 1));
    await writeFileAtomic(path, text);
  }

  /** With slot kernels, a slot the installer has not written an entry for yet (none on disk). */
  async #unwritten(bootname: string): Promise<boolean> {
    if (!this.options.kernels) return false;
    checkBootname(this.#bootnames, bootname);
    return !(await this.entries()).has(bootname);
  }

  async getState(bootname: string): Promise<BootState> {
    // No entry, no boot: systemd-boot cannot start a slot the installer has not prepared.
    if (await this.#unwritten(bootname)) return { state: 'bad', attemptsLeft: 0 };
    const { e } = await this.#entry(bootname);
    if (e.left === undefined) return { state: 'good' };
    return { state: e.left > 0 ? 'good' : 'bad', attemptsLeft: e.left };
  }

  /** good: drop the counter (systemd-bless-boot good); bad: `+0-DONE` (systemd-bless-boot bad). */
  async setState(bootname: string, state: SlotBootState): Promise<void> {
    if (state === 'bad' && (await this.#unwritten(bootname))) return;
    const { e } = await this.#entry(bootname);
    if (state === 'good') await this.#rename(e);
    else await this.#rename(e, 0, e.done ?? 0);
  }

  /**
   * With `kernel-options`: copies the new slot's kernel and initramfs out of its image onto the
   * ESP (content-addressed names), writes the slot's entry atomically with no tries left (so it
   * is not booted before setPrimary), then removes kernel files no entry refers to any more.
   * The booted slot's entry is never written and its files are always referred to.
   */
  async prepareSlot(p: PrepareSlot): Promise<void> {
    const k = this.options.kernels;
    if (!k) return;
    checkBootname(this.#bootnames, p.bootname);
    const dir = join(k.esp, k.dir);
    const files = await withSlotImage(p, (mnt) => copyEspKernel(mnt, k.kernel, k.initrd, dir));
    faultPoint('esp-kernel-copied');
    let e = (await this.entries()).get(p.bootname);
    if (e && e.left !== 0) e = await this.#rename(e, 0, e.done ?? 0);
    const file = e?.file ?? entryFileName(`${this.options.prefix}${p.bootname}`, 0);
    const text = [
      `title Ferry ${p.version.replace(/[^\x20-\x7e]/g, '?')} (slot ${p.bootname})`,
      `sort-key ${this.options.sortKey}`,
      'version 0',
      `linux /${k.dir}/${files.linux}`,
      `initrd /${k.dir}/${files.initrd}`,
      `options ${k.options[p.bootname]}`,
      '',
    ].join('\n');
    await writeFileAtomic(join(this.options.entries, file), text);
    await this.#ensureDefaultGlob();
    faultPoint('esp-entry-written');
    await pruneEspKernels(dir, await this.#referenced(k));
    faultPoint('esp-pruned');
  }

  /** Names in the kernel directory that some entry's linux or initrd line refers to. */
  async #referenced(k: SlotKernels): Promise<Set<string>> {
    const keep = new Set<string>();
    const at = `/${k.dir}/`;
    for (const file of await readdir(this.options.entries)) {
      if (!file.endsWith('.conf')) continue;
      const text = (await readBounded(join(this.options.entries, file), MAX_ENTRY)).toString(
        'utf8',
      );
      for (const m of text.matchAll(/^[ \t]*(?:linux|initrd)[ \t]+(\S+)/gm)) {
        const path = (m[1] ?? '').replace(/\\/g, '/');
        if (path.toLowerCase().startsWith(at.toLowerCase())) keep.add(path.slice(at.length));
      }
    }
    return keep;
  }

  /** From LoaderEntrySelected: 4 bytes of attributes, then the entry id in UTF-16LE. */
  async getCurrent(): Promise<string | undefined> {
    const path = join(this.options.efivars, `LoaderEntrySelected-${LOADER_GUID}`);
    const raw = await readBounded(path, 4 + 2048).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return undefined;
      throw e;
    });
    if (!raw || raw.length < 4) return undefined;
    const id = raw.subarray(4).toString('utf16le').replace(/\0.*$/s, '');
    const base = id.split(/[\\/]/).at(-1) ?? '';
    const stem =
      parseEntryName(base.endsWith('.conf') ? base : `${base}.conf`)?.stem.toLowerCase() ?? '';
    const prefix = this.options.prefix.toLowerCase();
    if (!stem.startsWith(prefix)) return undefined;
    // systemd-boot lower-cases ids; map back to the configured spelling.
    return this.#bootnames.find((b) => b.toLowerCase() === stem.slice(prefix.length));
  }
}

/** Factory for BOOTLOADERS: `systemd-boot`. */
export const systemdBootBootloader: BootloaderFactory = (ctx) => new SystemdBootBootloader(ctx);
