/**
 * The three-way /etc merge for deployments, and the local-change listing behind
 * `ferry etc diff`. Rules: docs/etc-merge.md; deciding: etc-merge-plan.ts (pure); reading
 * hostile trees: etc-tree.ts; the user database: passwd-merge.ts.
 */
import { join } from 'node:path';
import { FerryError, writeFileAtomic } from '@ferry/core';
import { planEtcMerge, type EtcConflict, type EtcMergePlan } from './etc-merge-plan.ts';
import { unifiedDiff, DIFF_MAX_LINES } from './etc-line-diff.ts';
import {
  ETC_TREE_LIMITS,
  readEtcFile,
  sameEntry,
  scanEtcTree,
  type EtcEntry,
  type EtcEntryType,
  type EtcTree,
  type EtcTreeLimits,
} from './etc-tree.ts';
import * as w from './etc-write.ts';
import { haveXattrTools, readXattrs, withXattrs, writeXattrs, xattrsOf } from './etc-xattr.ts';
import { mergeUsers, USER_DB_FILES, USER_DB_MAX_BYTES, type UserDb } from './passwd-merge.ts';

/** Identity of this machine: never replaced by an image's copy (docs/etc-merge.md, rule 7). */
export const DEFAULT_ALWAYS_LIVE: readonly string[] = ['machine-id', 'hostname'];

/** Input of mergeEtc: three directories to read, one to create. */
export interface EtcMergeOptions {
  /** The old deployment's default /etc (e.g. `<old deployment>/usr/etc`). */
  oldDefaults: string;
  /** The running system's /etc, with the owner's changes. */
  live: string;
  /** The new deployment's default /etc. */
  newDefaults: string;
  /** Where the merged tree is written: absent, or an empty directory. */
  out: string;
  /** Absent or empty directory for report.json and the new defaults of conflicting paths. */
  conflictDir?: string;
  /** Paths (relative to /etc, with their subtrees) always taken from live. */
  alwaysLive?: readonly string[];
  /** Paths always taken from the new defaults, discarding local changes. */
  alwaysNew?: readonly string[];
  /** Copy extended attributes (default: when getfattr and setfattr are installed). */
  xattrs?: boolean;
  /** Called once per conflict, after the merged tree is written. */
  onConflict?: (c: EtcConflict) => void;
  limits?: Partial<EtcTreeLimits>;
}

/** What a merge did, counted against the live tree. */
export interface EtcMergeReport {
  kept: number;
  updated: number;
  added: number;
  removed: number;
  conflicts: EtcConflict[];
  /** Whether extended attributes were copied. */
  xattrs: boolean;
}

interface UserFiles {
  files: Map<string, { data: Buffer; meta: EtcEntry }>;
  conflicts: EtcConflict[];
  kept: number;
  updated: number;
}

async function readUserDb(tree: EtcTree): Promise<UserDb> {
  const db: UserDb = {};
  for (const f of USER_DB_FILES) {
    const e = tree.entries.get(f);
    if (e?.type !== 'file') continue;
    if (e.size > USER_DB_MAX_BYTES)
      throw new FerryError('ETC_PASSWD_INVALID', `${f} is larger than ${USER_DB_MAX_BYTES} bytes`);
    db[f] = (await readEtcFile(tree, f, USER_DB_MAX_BYTES)).toString('utf8');
  }
  return db;
}

/** passwd, group, shadow, gshadow that live has as regular files go through mergeUsers. */
async function mergeUserFiles(old: EtcTree, live: EtcTree, neu: EtcTree): Promise<UserFiles> {
  const [o, l, n] = await Promise.all([readUserDb(old), readUserDb(live), readUserDb(neu)]);
  const r = mergeUsers({ oldDefaults: o, live: l, newDefaults: n });
  const out: UserFiles = { files: new Map(), conflicts: [], kept: 0, updated: 0 };
  for (const f of USER_DB_FILES) {
    const text = r.files[f];
    const meta = live.entries.get(f);
    if (text === undefined || meta === undefined) continue;
    out.files.set(f, { data: Buffer.from(text), meta });
    out[text === l[f] ? 'kept' : 'updated']++;
  }
  out.conflicts = r.conflicts.map((c) => ({ path: c.file, kind: c.kind, detail: c.detail }));
  return out;
}

interface WriteCtx {
  trees: { live: EtcTree; new: EtcTree };
  xattrs: boolean;
  out: string;
  maxFileBytes: number;
}

async function writeTree(plan: EtcMergePlan, users: UserFiles, c: WriteCtx): Promise<void> {
  const dirs: [string, EtcEntry][] = [];
  const attrs: [string, [string, string][]][] = [];
  const made = new Set<string>();
  for (const path of [...plan.take.keys()].sort()) {
    const from = plan.take.get(path) ?? 'live';
    const tree = c.trees[from];
    const e = tree.entries.get(path) as EtcEntry;
    const dest = path === '' ? c.out : join(c.out, path);
    // Defence in depth: never write below anything but a directory this merge created.
    const parent = path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : '';
    if (path !== '' && !made.has(parent))
      throw new FerryError('INTERNAL', `${path}: parent is not a merged directory`);
    if (e.type === 'dir') {
      if (path !== '') await w.createDirEntry(dest);
      dirs.push([dest, e]);
      made.add(path);
    } else if (e.type === 'symlink') await w.writeSymlinkEntry(dest, e);
    else await w.writeFileEntry(dest, await readEtcFile(tree, path, c.maxFileBytes), e);
    attrs.push([path, xattrsOf(e)]);
  }
  for (const [f, { data, meta }] of users.files) {
    await w.writeFileEntry(join(c.out, f), data, meta);
    attrs.push([f, xattrsOf(meta)]);
  }
  if (c.xattrs) await writeXattrs(c.out, attrs);
  // Children first: a directory may be read-only once finished.
  for (const [dest, e] of dirs.reverse()) await w.finishDir(dest, e);
}

const SAVED_KINDS = new Set(['both-changed', 'both-added', 'deleted-locally-changed-upstream']);

/** Stores the new default of each conflicting file or symlink under conflictDir/files/. */
async function saveConflicts(conflicts: EtcConflict[], neu: EtcTree, dir: string, max: number) {
  const files = join(dir, 'files');
  for (const c of conflicts) {
    const e = neu.entries.get(c.path);
    if (!SAVED_KINDS.has(c.kind) || (e?.type !== 'file' && e?.type !== 'symlink')) continue;
    await w.mkParents(files, c.path);
    const dest = join(files, c.path);
    if (e.type === 'symlink') await w.writeSymlinkEntry(dest, e);
    else await w.writeFileEntry(dest, await readEtcFile(neu, c.path, max), e);
    c.savedAs = `files/${c.path}`;
  }
}

/**
 * Three-way merges /etc into `out`: the owner's changes to the old defaults are carried onto
 * the new defaults (rules in docs/etc-merge.md). Input trees are read without following any
 * symlink and never written. Returns what was kept, updated, added and removed, and the
 * conflicts; with `conflictDir`, also writes report.json and each conflicting new default
 * there.
 *
 * @example
 * const report = await mergeEtc({
 *   oldDefaults: '/ferry/deploy/1/usr/etc', live: '/etc', newDefaults: '/ferry/deploy/2/usr/etc',
 *   out: '/ferry/deploy/2/etc.tmp', conflictDir: '/var/lib/ferry/etc-conflicts/2',
 * });
 * if (report.conflicts.length) emit('etc.conflicts', report.conflicts);
 */
export async function mergeEtc(opts: EtcMergeOptions): Promise<EtcMergeReport> {
  const limits = { ...ETC_TREE_LIMITS, ...opts.limits };
  await w.prepareEmptyDir(opts.out);
  if (opts.conflictDir !== undefined) await w.prepareEmptyDir(opts.conflictDir);
  const xattrs = opts.xattrs ?? haveXattrTools();
  const scan = async (path: string) => {
    const tree = await scanEtcTree(path, limits);
    return xattrs ? withXattrs(tree, await readXattrs(tree.root)) : tree;
  };
  const [old, live, neu] = await Promise.all([
    scan(opts.oldDefaults),
    scan(opts.live),
    scan(opts.newDefaults),
  ]);
  const users = await mergeUserFiles(old, live, neu);
  const plan = planEtcMerge({
    old: old.entries,
    live: live.entries,
    new: neu.entries,
    alwaysLive: opts.alwaysLive ?? DEFAULT_ALWAYS_LIVE,
    alwaysNew: opts.alwaysNew ?? [],
    exclude: new Set(users.files.keys()),
  });
  const ctx = {
    trees: { live, new: neu },
    xattrs,
    out: opts.out,
    maxFileBytes: limits.maxFileBytes,
  };
  await writeTree(plan, users, ctx);
  const conflicts = [...plan.conflicts, ...users.conflicts].sort((a, b) =>
    a.path < b.path ? -1 : 1,
  );
  if (opts.conflictDir !== undefined)
    await saveConflicts(conflicts, neu, opts.conflictDir, limits.maxFileBytes);
  const report: EtcMergeReport = {
    kept: plan.kept + users.kept,
    updated: plan.updated + users.updated,
    added: plan.added,
    removed: plan.removed,
    conflicts,
    xattrs,
  };
  if (opts.conflictDir !== undefined)
    await writeFileAtomic(
      join(opts.conflictDir, 'report.json'),
      `${JSON.stringify(report, null, 2)}\n`,
      0o600,
    );
  for (const c of conflicts) opts.onConflict?.(c);
  return report;
}

/** One local change to /etc, relative to the defaults. */
export interface EtcChange {
  path: string;
  kind: 'modified' | 'added' | 'deleted';
  type: EtcEntryType;
  /** Metadata changes and notes ("mode 644 -> 600", "binary/large file differs"). */
  details: string[];
  /** Unified diff of text files under 1 MiB and DIFF_MAX_LINES lines. */
  diff?: string;
}

const TEXT_MAX_BYTES = 1024 * 1024;

async function textOf(tree: EtcTree, e: EtcEntry | undefined, path: string) {
  if (e === undefined) return '';
  if (e.type !== 'file' || e.size > TEXT_MAX_BYTES) return undefined;
  const data = await readEtcFile(tree, path, TEXT_MAX_BYTES);
  if (data.includes(0)) return undefined;
  const text = new TextDecoder('utf-8', { fatal: false }).decode(data);
  if (text.includes('\uFFFD') || text.split('\n').length > DIFF_MAX_LINES + 1) return undefined;
  return text;
}

function metaDetails(a: EtcEntry | undefined, b: EtcEntry | undefined): string[] {
  if (!a || !b) return [];
  const d: string[] = [];
  if (a.type !== b.type) d.push(`type ${a.type} -> ${b.type}`);
  if (a.mode !== b.mode) d.push(`mode ${a.mode.toString(8)} -> ${b.mode.toString(8)}`);
  if (a.uid !== b.uid || a.gid !== b.gid) d.push(`owner ${a.uid}:${a.gid} -> ${b.uid}:${b.gid}`);
  if (a.target !== b.target && b.type === 'symlink') d.push(`-> ${b.target ?? ''}`);
  return d;
}

/**
 * Lists the local changes of `live` against `defaults`: each path modified, added or deleted,
 * with metadata changes and, for text files, a unified diff.
 *
 * @example
 * for (const c of await diffEtc({ defaults: '/usr/etc', live: '/etc' }))
 *   out.write(`${c.kind} ${c.path}\n${c.diff ?? c.details.join('\n')}\n`);
 */
export async function diffEtc(opts: {
  defaults: string;
  live: string;
  limits?: Partial<EtcTreeLimits>;
}): Promise<EtcChange[]> {
  const [d, l] = await Promise.all([
    scanEtcTree(opts.defaults, opts.limits),
    scanEtcTree(opts.live, opts.limits),
  ]);
  const paths = [...new Set([...d.entries.keys(), ...l.entries.keys()])].sort();
  const changes: EtcChange[] = [];
  for (const path of paths) {
    const a = d.entries.get(path);
    const b = l.entries.get(path);
    if (sameEntry(a, b)) continue;
    const kind = !a ? 'added' : !b ? 'deleted' : 'modified';
    const change: EtcChange = {
      path,
      kind,
      type: (b ?? a)?.type ?? 'file',
      details: metaDetails(a, b),
    };
    const fileOrNone = (e: EtcEntry | undefined) => (e?.type ?? 'file') === 'file';
    if (fileOrNone(a) && fileOrNone(b) && a?.digest !== b?.digest) {
      const [ta, tb] = [await textOf(d, a, path), await textOf(l, b, path)];
      if (ta === undefined || tb === undefined) change.details.push('binary/large file differs');
      else
        change.diff = unifiedDiff(
          ta,
          tb,
          a ? `a/${path}` : '/dev/null',
          b ? `b/${path}` : '/dev/null',
        );
    }
    changes.push(change);
  }
  return changes;
}
