/**
 * Reading a repository's current metadata and writing new versions of it. Metadata is read the
 * way a client follows it (timestamp -> snapshot -> targets -> channel roles), size-bounded and
 * parsed with @tufjs/models; signatures are checked by repo-verify.ts, not here.
 */
import { open, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { canonicalize } from '@tufjs/canonical-json';
import {
  Metadata,
  MetadataKind,
  type Root,
  type Snapshot,
  type Targets,
  type Timestamp,
} from '@tufjs/models';
import {
  FerryError,
  isFerryError,
  parseJsonBounded,
  readBoundedFile,
  withContext,
  writeFileAtomic,
} from '@ferry/core';
import {
  DEFAULT_EXPIRY,
  LOCK_FILE,
  METADATA_DIR,
  METADATA_MAX_BYTES,
  REPO_CONFIG_FILE,
  metadataFile,
  type RepoExpiry,
} from './repo-layout.ts';
import type { AnyMetadata } from './tuf-key.ts';

/** The operator settings stored in `ferry-repo.json`. */
export interface RepoConfig {
  format: 1;
  expiry: RepoExpiry;
}

/** The repository's current metadata, as the newest timestamp.json leads to it. */
export interface RepoState {
  dir: string;
  config: RepoConfig;
  root: Metadata<Root>;
  timestamp: Metadata<Timestamp>;
  snapshot: Metadata<Snapshot>;
  targets: Metadata<Targets>;
  /** Delegated (channel) roles by role name. */
  roles: Map<string, Metadata<Targets>>;
}

const JSON_LIMITS = { maxDepth: 32 };

function invalid(message: string, cause?: unknown): FerryError {
  return new FerryError('REPO_INVALID', message, { cause });
}

/** Reads and parses one metadata file of `kind` (bounded by the client size limit of the kind). */
export async function readMetadata<K extends MetadataKind>(
  path: string,
  kind: K,
): Promise<{ md: MetadataOf<K>; bytes: Buffer }> {
  const maxBytes = METADATA_MAX_BYTES[kind];
  const { bytes } = await readBoundedFile(path, maxBytes, 'REPO_INVALID');
  try {
    const json = parseJsonBounded(bytes, { maxBytes, ...JSON_LIMITS });
    if (typeof json !== 'object' || json === null || Array.isArray(json))
      throw invalid('not a JSON object');
    const md = Metadata.fromJSON(kind as MetadataKind.Root, json as never);
    return { md: md as unknown as MetadataOf<K>, bytes };
  } catch (e) {
    if (isFerryError(e, 'REPO_INVALID')) throw e.withContext(path);
    throw invalid(`${path}: ${(e as Error).message}`, e);
  }
}

/** The Metadata type of a kind. */
export type MetadataOf<K extends MetadataKind> = K extends MetadataKind.Root
  ? Metadata<Root>
  : K extends MetadataKind.Timestamp
    ? Metadata<Timestamp>
    : K extends MetadataKind.Snapshot
      ? Metadata<Snapshot>
      : Metadata<Targets>;

/** The highest N with `metadata/N.root.json` present (0 if none). */
export async function latestRootVersion(dir: string): Promise<number> {
  const names = await readdir(join(dir, METADATA_DIR)).catch((e: unknown) => {
    throw withContext(`reading ${join(dir, METADATA_DIR)}`, e);
  });
  let max = 0;
  for (const n of names) {
    const m = /^([1-9][0-9]{0,8})\.root\.json$/.exec(n);
    if (m) max = Math.max(max, Number(m[1]));
  }
  return max;
}

/** Reads `ferry-repo.json`. */
export async function readConfig(dir: string): Promise<RepoConfig> {
  const { bytes } = await readBoundedFile(join(dir, REPO_CONFIG_FILE), 64 * 1024, 'REPO_INVALID');
  const v = parseJsonBounded(bytes, { maxBytes: 64 * 1024, maxDepth: 4 }) as Partial<RepoConfig>;
  if (v?.format !== 1) throw invalid(`${REPO_CONFIG_FILE}: unknown format`);
  return { format: 1, expiry: checkExpiry({ ...DEFAULT_EXPIRY, ...v.expiry }) };
}

/** Throws USAGE unless every period is a positive number of days (at most 100 years). */
export function checkExpiry(e: RepoExpiry): RepoExpiry {
  for (const [role, days] of Object.entries(e))
    if (typeof days !== 'number' || !(days > 0 && days <= 36_500))
      throw new FerryError('USAGE', `expiry of ${role} must be 0 < days <= 36500`);
  return { root: e.root, targets: e.targets, snapshot: e.snapshot, timestamp: e.timestamp };
}

/** Loads the current metadata: newest root, then timestamp -> snapshot -> targets -> roles. */
export async function loadRepo(dir: string): Promise<RepoState> {
  const config = await readConfig(dir);
  const rootVersion = await latestRootVersion(dir);
  if (rootVersion === 0) throw invalid(`${dir} holds no metadata/1.root.json`);
  const root = (await readMetadata(metadataFile(dir, 'root', rootVersion), MetadataKind.Root)).md;
  const timestamp = (await readMetadata(metadataFile(dir, 'timestamp'), MetadataKind.Timestamp)).md;
  const sv = timestamp.signed.snapshotMeta.version;
  const snapshot = (await readMetadata(metadataFile(dir, 'snapshot', sv), MetadataKind.Snapshot))
    .md;
  const load = async (role: string) => {
    const meta = snapshot.signed.meta[`${role}.json`];
    if (!meta) throw invalid(`snapshot ${sv} does not list ${role}`);
    return (await readMetadata(metadataFile(dir, role, meta.version), MetadataKind.Targets)).md;
  };
  const targets = await load('targets');
  const roles = new Map<string, Metadata<Targets>>();
  for (const name of Object.keys(targets.signed.delegations?.roles ?? {}))
    roles.set(name, await load(name));
  return { dir, config, root, timestamp, snapshot, targets, roles };
}

/**
 * Writes `md` as `metadata/N.<role>.json` (or `<role>.json` when `versioned` is false) in its
 * canonical JSON form. Refuses (REPO_METADATA_TOO_LARGE) what a client would not download.
 */
export async function writeMetadata(
  dir: string,
  role: string,
  md: AnyMetadata,
  versioned = true,
): Promise<Buffer> {
  const bytes = Buffer.from(canonicalize(md.toJSON()));
  const limit = METADATA_MAX_BYTES[md.signed.type];
  if (bytes.length > limit)
    throw new FerryError(
      'REPO_METADATA_TOO_LARGE',
      `${role} metadata is ${bytes.length} bytes, clients accept ${limit}`,
    );
  const path = metadataFile(dir, role, versioned ? md.signed.version : undefined);
  await writeFileAtomic(path, bytes).catch((e: unknown) => {
    throw withContext(`writing ${path}`, e);
  });
  return bytes;
}

/**
 * Runs `fn` holding the repository lock: one writer at a time, so versions never collide and gc
 * never deletes a chunk a publish is about to reference. A crash leaves the lock file behind;
 * REPO_LOCKED names it so the operator can remove it.
 */
export async function withRepoLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const path = join(dir, LOCK_FILE);
  let fh;
  try {
    fh = await open(path, 'wx', 0o644);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST')
      throw new FerryError('REPO_LOCKED', `${path} exists: another command runs, or remove it`);
    throw withContext(`locking ${dir}`, e);
  }
  try {
    await fh.writeFile(`${process.pid}\n`);
    await fh.close();
    return await fn();
  } finally {
    await rm(path, { force: true });
  }
}
