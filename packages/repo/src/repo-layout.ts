/**
 * Where everything lives in a repository directory, and the names of roles and targets
 * (docs/formats/repository.md). Pure: no I/O.
 */
import { basename, dirname, join } from 'node:path';
import { FerryError } from '@ferry/core';

/** Signed TUF metadata: `N.root.json`, `root.json`, `N.targets.json`, `timestamp.json`, ... */
export const METADATA_DIR = 'metadata';
/** Target files under consistent-snapshot names (`<dir>/<sha256>.<basename>`). */
export const TARGETS_DIR = 'targets';
/** Tree listings of published releases: `<digest>.tree.zst` (zstd of the listing bytes). */
export const TREES_DIR = 'trees';
/** File objects of published trees: `<2 hex>/<62 hex>.zst` (zstd of the file content). */
export const OBJECTS_DIR = 'objects';
/** The operator's settings for this repository (expiry periods); not signed, not secret. */
export const REPO_CONFIG_FILE = 'ferry-repo.json';
/** Held (O_EXCL) while a command changes the repository. */
export const LOCK_FILE = '.ferry-repo.lock';
/** The TUF specification version the metadata declares. */
export const SPEC_VERSION = '1.0.31';

/**
 * Largest metadata file of each kind, in bytes: the defaults of the tuf-js and python-tuf
 * clients, so a repository never writes a file a client would refuse (endless-data limits).
 */
export const METADATA_MAX_BYTES = {
  root: 512_000,
  timestamp: 16_384,
  snapshot: 2_000_000,
  targets: 5_000_000,
} as const;

/** Largest manifest or chunk index target this repository reads back (verify, gc). */
export const TARGET_MAX_BYTES = 256 * 1024 * 1024;

/** How long each role's metadata stays valid after it is signed, in days. */
export interface RepoExpiry {
  root: number;
  targets: number;
  snapshot: number;
  timestamp: number;
}

/** Default validity: root 365 days, targets (and channels) 90, snapshot 7, timestamp 1. */
export const DEFAULT_EXPIRY: Readonly<RepoExpiry> = Object.freeze({
  root: 365,
  targets: 90,
  snapshot: 7,
  timestamp: 1,
});

/** `now + days` as TUF wants it: RFC 3339 UTC without fractional seconds. */
export function expiresAt(now: Date, days: number): string {
  const t = new Date(now.getTime() + Math.round(days * 86_400_000));
  return t.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

const CHANNEL_RE = /^[a-z][a-z0-9-]{0,31}$/;
const ROLE_PREFIX = 'channel-';

/** Throws USAGE unless `channel` is 1-32 of `[a-z0-9-]`, starting with a letter. */
export function checkChannel(channel: string): string {
  if (!CHANNEL_RE.test(channel))
    throw new FerryError('USAGE', `not a channel name: ${JSON.stringify(channel)}`);
  return channel;
}

/** The delegated targets role of a channel: `channel-<name>`. */
export function channelRoleName(channel: string): string {
  return ROLE_PREFIX + checkChannel(channel);
}

/** The channel a role name stands for, or undefined for any other role. */
export function channelOfRole(role: string): string | undefined {
  const name = role.startsWith(ROLE_PREFIX) ? role.slice(ROLE_PREFIX.length) : '';
  return CHANNEL_RE.test(name) ? name : undefined;
}

/**
 * The path pattern a channel role is trusted for. TUF matches `*` within one path segment, so
 * the pattern has one `*` per segment: `channels/<name>/<compatible>/<version>/<file>`.
 */
export function channelPathPattern(channel: string): string {
  return `channels/${checkChannel(channel)}/*/*/*`;
}

/** The target file holding a release's signed manifest envelope. */
export const MANIFEST_TARGET = 'manifest.json';
/** Suffix of the target holding an image's chunk index: `<image>.cidx`. */
export const CHUNK_INDEX_SUFFIX = '.cidx';

/** The target directory of one release: `channels/<channel>/<compatible>/<version>`. */
export function releaseDir(channel: string, compatible: string, version: string): string {
  // A '/' in compatible would shift the segments the delegation pattern counts.
  if (compatible.includes('/'))
    throw new FerryError('USAGE', `a repository compatible cannot contain '/': ${compatible}`);
  return `channels/${checkChannel(channel)}/${compatible}/${version}`;
}

const SEGMENT_RE = /^[A-Za-z0-9._+:@-]{1,256}$/;
const TARGET_PATH_RE = /^channels\/[a-z][a-z0-9-]{0,31}\/[^/]+\/[^/]+\/[^/]+$/;

/**
 * Throws REPO_INVALID unless `path` is a target path this layout can hold: five segments, none
 * empty, `.` or `..`. Attack stopped: a target path in metadata escaping `targets/`.
 */
export function checkTargetPath(path: string): string {
  const ok =
    TARGET_PATH_RE.test(path) &&
    path.split('/').every((s) => SEGMENT_RE.test(s) && s !== '.' && s !== '..');
  if (!ok) throw new FerryError('REPO_INVALID', `not a target path: ${JSON.stringify(path)}`);
  return path;
}

/** Where the target `path` with SHA-256 `sha256` is stored (TUF consistent-snapshot name). */
export function targetFile(dir: string, path: string, sha256: string): string {
  checkTargetPath(path);
  if (!/^[0-9a-f]{64}$/.test(sha256)) throw new FerryError('REPO_INVALID', 'bad target hash');
  return join(dir, TARGETS_DIR, dirname(path), `${sha256}.${basename(path)}`);
}

const HEX64 = /^[0-9a-f]{64}$/;

function hex64(id: string, what: string): string {
  // Attack stopped: an id like "../../etc" from a manifest or listing must never become a path.
  if (!HEX64.test(id)) throw new FerryError('REPO_INVALID', `not a ${what}: ${JSON.stringify(id)}`);
  return id;
}

/** Where the listing with tree digest `digest` is stored: `trees/<digest>.tree.zst`. */
export function treeFile(dir: string, digest: string): string {
  return join(dir, TREES_DIR, `${hex64(digest, 'tree digest')}.tree.zst`);
}

/**
 * Where the listing `to` is stored as a zstd frame made with listing `from` as its dictionary:
 * `trees/<to>.from-<from>.zst`. A device holding `from` fetches this instead of the whole
 * listing (a few hundred bytes instead of hundreds of KiB for a small update).
 */
export function treeDeltaFile(dir: string, to: string, from: string): string {
  return join(dir, TREES_DIR, `${hex64(to, 'tree digest')}.from-${hex64(from, 'tree digest')}.zst`);
}

/** Where file object `id` is stored: `objects/<2 hex>/<62 hex>.zst`. */
export function objectFile(dir: string, id: string): string {
  hex64(id, 'object id');
  return join(dir, OBJECTS_DIR, id.slice(0, 2), `${id.slice(2)}.zst`);
}

/** A metadata file: `N.<role>.json`, or `<role>.json` without a version. */
export function metadataFile(dir: string, role: string, version?: number): string {
  return join(
    dir,
    METADATA_DIR,
    version === undefined ? `${role}.json` : `${version}.${role}.json`,
  );
}

/**
 * Splits `compatible@version` at its last `@` (a SemVer version holds none).
 *
 * @example
 * parseReleaseRef('acme-gw@1.2.0'); // { compatible: 'acme-gw', version: '1.2.0' }
 */
export function parseReleaseRef(ref: string): { compatible: string; version: string } {
  const at = ref.lastIndexOf('@');
  if (at <= 0 || at === ref.length - 1)
    throw new FerryError('USAGE', `expected compatible@version, got ${JSON.stringify(ref)}`);
  return { compatible: ref.slice(0, at), version: ref.slice(at + 1) };
}
