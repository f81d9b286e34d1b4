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
  SlotBootState,
} from './bootloader.ts';
import { checkBootname, checkKeys } from './bootloader-tool.ts';

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

interface SdOptions {
  entries: string;
  loaderConf: string;
  prefix: string;
  sortKey: string;
  efivars: string;
}

function parseOptions(ctx: BootloaderContext): SdOptions {
  const o = ctx.options;
  checkKeys('systemd-boot', o, ['entries', 'loader-conf', 'entry-prefix', 'sort-key', 'efivars']);
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
  return {
    entries: path('entries', '/boot/loader/entries'),
    loaderConf: path('loader-conf', '/boot/loader/loader.conf'),
    efivars: path('efivars', '/sys/firmware/efi/efivars'),
    prefix,
    sortKey: word('sort-key', 'ferry', /^[A-Za-z0-9._-]{1,64}$/),
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

  async getState(bootname: string): Promise<BootState> {
    const { e } = await this.#entry(bootname);
    if (e.left === undefined) return { state: 'good' };
    return { state: e.left > 0 ? 'good' : 'bad', attemptsLeft: e.left };
  }

  /** good: drop the counter (systemd-bless-boot good); bad: `+0-DONE` (systemd-bless-boot bad). */
  async setState(bootname: string, state: SlotBootState): Promise<void> {
    const { e } = await this.#entry(bootname);
    if (state === 'good') await this.#rename(e);
    else await this.#rename(e, 0, e.done ?? 0);
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
