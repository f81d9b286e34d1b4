/**
 * Boot entries for deployments: one Boot Loader Specification Type #1 entry per deployment,
 * `<bootDir>/loader/entries/ferry-<id>[+LEFT[-DONE]].conf`, with its kernel and initramfs copied
 * to `<bootDir>/ferry/` under content-addressed names. systemd-boot reads the entries directly
 * (boot counting in the file name, systemd's Automatic Boot Assessment); for GRUB,
 * deploy-boot-grub.ts renders the same entries as a menu fragment.
 *
 * Which entry boots: loader.conf says `default ferry-*` and systemd-boot takes the first entry
 * that glob matches in its own order (no tries left last, then `version` descending). Ferry's
 * `version` line is therefore the entry's boot rank, not the release version (that is in the
 * title): setDefaultEntry gives one entry the highest rank. A per-entry `default` line would not
 * do: systemd-boot boots the `default` match even with no tries left (docs/bootloaders/systemd-boot.md).
 */
import { mkdir, readdir, readFile, rename, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { FerryError, fsyncDir, writeFileAtomic } from '@ferry/core';
import { parseCmdline } from './booted.ts';
import { entryFileName, parseEntryName, verscmp } from './bootloader-systemd-boot.ts';
import { copyContentAddressed, findKernel } from './deploy-boot-kernel.ts';
import { DEPLOYMENT_ID } from './deploy-state.ts';

/** The deployment a boot entry is written for. */
export interface BootDeployment {
  id: string;
  /** Release version, shown in the title. */
  version: string;
  /** The checked-out tree (DeployStore.deploymentPath). */
  path: string;
}

/** Options of {@link writeBootEntry}. */
export interface WriteBootEntryOptions {
  /** The mounted ESP or XBOOTLDR partition (holds loader/entries). */
  bootDir: string;
  deployment: BootDeployment;
  /** `root=` for the kernel: the partition holding the deployment store, e.g. `PARTLABEL=data`. */
  root: string;
  /** More kernel arguments (printable ASCII words, no quotes or backslashes). */
  kernelArgs?: string[];
  /** Boot attempts before systemd-boot falls back; undefined writes a committed entry. */
  tries?: number;
}

/** A deployment's boot entry as {@link listBootEntries} reads it. */
export interface DeployBootEntry {
  id: string;
  /** File name in loader/entries. */
  file: string;
  /** Tries left; undefined for a committed (blessed) entry. */
  left?: number;
  done?: number;
  title: string;
  /** Boot rank (the entry's `version` line): the highest boots first. */
  rank: number;
  /** Paths on the boot partition, e.g. `/ferry/vmlinuz-6.1.0-13-amd64-<32 hex>`. */
  linux: string;
  initrd: string;
  options: string;
}

export const ENTRY_PREFIX = 'ferry-';
export const SORT_KEY = 'ferry';
const MAX_ENTRY_BYTES = 64 * 1024;
const KERNEL_ARG = /^[!#-&(-[\]-~]{1,1024}$/;
const BOOT_PATH = /^\/ferry\/(?:vmlinuz|initrd)-[A-Za-z0-9._+~-]{1,64}-[0-9a-f]{32}$/;
/** What removeBootEntry may delete in <bootDir>/ferry: kernels, initramfs images, stale temp files. */
const STORE_FILE =
  /^(?:(?:vmlinuz|initrd)-[A-Za-z0-9._+~-]{1,64}-[0-9a-f]{32}|\.tmp-[0-9a-f]{12})$/;

const invalid = (why: string) => new FerryError('DEPLOY_BOOT_ENTRY_INVALID', why);
const entriesDir = (bootDir: string) => join(bootDir, 'loader', 'entries');

function checkId(id: string): string {
  if (!DEPLOYMENT_ID.test(id))
    throw new FerryError('DEPLOY_NOT_FOUND', `no deployment ${id.slice(0, 80)}`);
  return id;
}

function checkArgs(o: WriteBootEntryOptions): string[] {
  const args = [`root=${o.root}`, `ferry.deployment=${o.deployment.id}`, ...(o.kernelArgs ?? [])];
  for (const a of args)
    if (!KERNEL_ARG.test(a))
      throw invalid(`kernel argument ${JSON.stringify(a.slice(0, 80))} is not a printable word`);
  // A second ferry.deployment= would win on the kernel's command line (the last one counts).
  if (args.filter((a) => a.startsWith('ferry.deployment=')).length > 1)
    throw invalid('kernelArgs must not set ferry.deployment');
  if (!/^[ -~]{1,128}$/.test(o.deployment.version))
    throw invalid('release version is not printable ASCII');
  if (o.tries !== undefined && (!Number.isInteger(o.tries) || o.tries < 1 || o.tries > 999))
    throw invalid(`tries must be 1..999, got ${o.tries}`);
  return args;
}

function field(text: string, key: string): string | undefined {
  return new RegExp(`^[ \\t]*${key}[ \\t]+(.+?)[ \\t]*$`, 'm').exec(text)?.[1];
}

function renderEntry(e: Omit<DeployBootEntry, 'file' | 'left' | 'done'>): string {
  return [
    `title ${e.title}`,
    `version ${e.rank}`,
    `sort-key ${SORT_KEY}`,
    `linux ${e.linux}`,
    `initrd ${e.initrd}`,
    `options ${e.options}`,
    '',
  ].join('\n');
}

async function readEntry(dir: string, file: string, id: string): Promise<DeployBootEntry> {
  const text = await readFile(join(dir, file));
  if (text.length > MAX_ENTRY_BYTES)
    throw invalid(`${file} is larger than ${MAX_ENTRY_BYTES} bytes`);
  const t = text.toString('utf8');
  const get = (k: string) => field(t, k) ?? '';
  const n = parseEntryName(file)!;
  const e = {
    id,
    file,
    title: get('title'),
    rank: Number(get('version')),
    linux: get('linux'),
    initrd: get('initrd'),
    options: get('options'),
  };
  // These paths reach the GRUB fragment and the GC of /ferry: only Ferry's own shapes pass.
  if (!BOOT_PATH.test(e.linux) || !BOOT_PATH.test(e.initrd))
    throw invalid(`${file}: linux/initrd are not Ferry's`);
  if (!/^\d{1,9}$/.test(get('version'))) throw invalid(`${file}: version is not a boot rank`);
  if (!e.options.split(' ').every((a) => KERNEL_ARG.test(a))) throw invalid(`${file}: bad options`);
  return { ...e, ...(n.left !== undefined ? { left: n.left, done: n.done ?? 0 } : {}) };
}

/**
 * Ferry's deployment entries in the order systemd-boot would try them: entries with tries left
 * (or none counted) first, then by rank, then newest id. `[0]` is what boots next.
 * DEPLOY_BOOT_ENTRY_INVALID for a malformed entry or two entries of one deployment.
 */
export async function listBootEntries(bootDir: string): Promise<DeployBootEntry[]> {
  const dir = entriesDir(bootDir);
  const files = await readdir(dir).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return [] as string[];
    throw e;
  });
  const out: DeployBootEntry[] = [];
  for (const file of files) {
    const n = parseEntryName(file);
    const id = n?.stem.startsWith(ENTRY_PREFIX) ? n.stem.slice(ENTRY_PREFIX.length) : '';
    if (!DEPLOYMENT_ID.test(id)) continue;
    if (out.some((e) => e.id === id)) throw invalid(`two boot entries for deployment ${id}`);
    out.push(await readEntry(dir, file, id));
  }
  return out.sort(
    (a, b) =>
      Number(a.left === 0) - Number(b.left === 0) || b.rank - a.rank || -verscmp(a.id, b.id),
  );
}

async function findEntry(
  bootDir: string,
  id: string,
): Promise<{ all: DeployBootEntry[]; e: DeployBootEntry }> {
  const all = await listBootEntries(bootDir);
  const e = all.find((x) => x.id === checkId(id));
  if (!e) throw new FerryError('DEPLOY_BOOT_ENTRY_MISSING', `no boot entry for deployment ${id}`);
  return { all, e };
}

async function renameEntry(bootDir: string, from: string, to: string): Promise<void> {
  if (from === to) return;
  await rename(join(entriesDir(bootDir), from), join(entriesDir(bootDir), to));
  await fsyncDir(entriesDir(bootDir));
}

/**
 * Copies the deployment's kernel and initramfs to `<bootDir>/ferry/` and writes its entry
 * `ferry-<id>+<tries>.conf` (atomically). A new entry gets rank 0, so writing one never changes
 * what boots: {@link setDefaultEntry} does. Rewriting an existing entry keeps its rank.
 * @example
 * await writeBootEntry({ bootDir: '/boot', root: 'PARTLABEL=data', tries: 3,
 *   deployment: { id: d.id, version: '2.0.0', path: store.deploymentPath(d.id) } });
 * await setDefaultEntry('/boot', d.id);
 */
export async function writeBootEntry(o: WriteBootEntryOptions): Promise<DeployBootEntry> {
  const id = checkId(o.deployment.id);
  const options = checkArgs(o).join(' ');
  const k = await findKernel(o.deployment.path);
  const store = join(o.bootDir, 'ferry');
  const linux = await copyContentAddressed(
    join(o.deployment.path, k.linux),
    store,
    `vmlinuz-${k.kver}`,
  );
  const initrd = await copyContentAddressed(
    join(o.deployment.path, k.initrd),
    store,
    `initrd-${k.kver}`,
  );
  const old = (await listBootEntries(o.bootDir)).find((e) => e.id === id);
  const entry = {
    id,
    title: `Ferry ${o.deployment.version} (${id})`,
    rank: old?.rank ?? 0,
    linux: `/ferry/${linux}`,
    initrd: `/ferry/${initrd}`,
    options,
  };
  const file = entryFileName(ENTRY_PREFIX + id, o.tries);
  await mkdir(entriesDir(o.bootDir), { recursive: true });
  // Rewrite in place, then rename: there is never a second entry file for one deployment.
  await writeFileAtomic(join(entriesDir(o.bootDir), old?.file ?? file), renderEntry(entry));
  if (old) await renameEntry(o.bootDir, old.file, file);
  return { ...entry, file, ...(o.tries !== undefined ? { left: o.tries, done: 0 } : {}) };
}

/** Drops the counter (`ferry-<id>.conf`), as `systemd-bless-boot good` does. */
export async function blessEntry(bootDir: string, id: string): Promise<void> {
  const { e } = await findEntry(bootDir, id);
  await renameEntry(bootDir, e.file, entryFileName(ENTRY_PREFIX + id));
}

/**
 * Makes `id` the entry systemd-boot boots: loader.conf gets `default ferry-*` (an atomic rewrite
 * keeping its other lines, only if needed), then the entry gets the highest rank (one atomic
 * rewrite of the entry: the commit point). Once its tries run out it sorts last and the entry
 * ranked next, the previous default, boots.
 */
export async function setDefaultEntry(bootDir: string, id: string): Promise<void> {
  const { all, e } = await findEntry(bootDir, id);
  await ensureDefaultGlob(join(bootDir, 'loader', 'loader.conf'));
  const top = Math.max(0, ...all.filter((x) => x.id !== id).map((x) => x.rank));
  if (e.rank > top) return;
  const path = join(entriesDir(bootDir), e.file);
  await writeFileAtomic(path, renderEntry({ ...e, rank: top + 1 }));
}

async function ensureDefaultGlob(path: string): Promise<void> {
  const text = await readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return '';
    throw err;
  });
  if (text.length > MAX_ENTRY_BYTES) throw invalid(`${path} is too large`);
  const glob = `${ENTRY_PREFIX}*`;
  if (field(text, 'default') === glob) return;
  const re = /^[ \t]*default[ \t].*$/m;
  const next = re.test(text)
    ? text.replace(re, `default ${glob}`)
    : `${text}${text === '' || text.endsWith('\n') ? '' : '\n'}default ${glob}\n`;
  await writeFileAtomic(path, next);
}

/**
 * Removes the entry of `id` (no-op if there is none), then every file in `<bootDir>/ferry/` no
 * remaining entry references. Entry first: a power cut leaves only unreferenced files.
 */
export async function removeBootEntry(bootDir: string, id: string): Promise<void> {
  const e = (await listBootEntries(bootDir)).find((x) => x.id === checkId(id));
  if (e) {
    await unlink(join(entriesDir(bootDir), e.file));
    await fsyncDir(entriesDir(bootDir));
  }
  const live = new Set((await listBootEntries(bootDir)).flatMap((x) => [x.linux, x.initrd]));
  const store = join(bootDir, 'ferry');
  for (const name of await readdir(store).catch(() => [] as string[]))
    if (STORE_FILE.test(name) && !live.has(`/ferry/${name}`))
      await rm(join(store, name), { force: true });
}

/**
 * The deployment the kernel command line names (`ferry.deployment=<id>`, as the boot entries
 * write it), or undefined without one. A malformed id is DEPLOY_NOT_FOUND: never guess.
 * @example
 * bootedDeployment(await readFile('/proc/cmdline', 'utf8')) // '2-0123456789ab'
 */
export function bootedDeployment(cmdline: string): string | undefined {
  const id = parseCmdline(cmdline.slice(0, 64 * 1024)).get('ferry.deployment');
  return id === undefined ? undefined : checkId(id);
}
