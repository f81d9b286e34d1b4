/**
 * Reads a Ferry release repository (a directory or an http(s) base URL) the way a device does:
 * walks the root chain from a trusted root, then verifies timestamp, snapshot, targets and
 * every channel role with @tufjs/models (signature thresholds, versions, lengths and hashes,
 * expiry). The server only reads: it never holds a repository signing key.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  Metadata,
  MetadataKind,
  type MetaFile,
  type Root,
  type Snapshot,
  type TargetFile,
  type Targets,
  type Timestamp,
} from '@tufjs/models';
import { FerryError } from '@ferry/core';

/** Size caps per metadata file (TUF client defaults). */
const LIMITS = { root: 512_000, timestamp: 16_384, snapshot: 2_000_000, targets: 5_000_000 };
const MAX_ROOT_ROTATIONS = 256;

/** One release target: a channel role's manifest entry with its custom fields. */
export interface RepositoryRelease {
  channel: string;
  compatible: string;
  version: string;
  releaseCounter: number;
  manifestPath: string;
  manifestSha256: string;
  manifestLength: number;
}

type Fetch = (path: string, limit: number) => Promise<Buffer | undefined>;

function fetcherFor(source: string): Fetch {
  if (/^https?:\/\//.test(source)) {
    const base = source.endsWith('/') ? source : source + '/';
    return async (path, limit) => {
      const res = await fetch(new URL(path, base), { signal: AbortSignal.timeout(30_000) });
      if (res.status === 404) return undefined;
      if (!res.ok) throw new FerryError('SERVER_REPOSITORY', `GET ${path}: HTTP ${res.status}`);
      const body = Buffer.from(await res.arrayBuffer());
      if (body.length > limit)
        throw new FerryError('SERVER_REPOSITORY', `${path} exceeds ${limit} bytes`);
      return body;
    };
  }
  return async (path, limit) => {
    try {
      const b = await readFile(join(source, path));
      if (b.length > limit)
        throw new FerryError('SERVER_REPOSITORY', `${path} exceeds ${limit} bytes`);
      return b;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  };
}

async function need(fetchFile: Fetch, path: string, limit: number): Promise<Buffer> {
  const b = await fetchFile(path, limit);
  if (!b) throw new FerryError('SERVER_REPOSITORY', `${path} is missing`);
  return b;
}

function parse<K extends MetadataKind>(kind: K, bytes: Buffer, what: string) {
  try {
    return Metadata.fromJSON(
      kind as MetadataKind.Root,
      JSON.parse(bytes.toString('utf8')) as Parameters<typeof Metadata.fromJSON>[1],
    );
  } catch (e) {
    throw new FerryError('SERVER_REPOSITORY', `${what} is malformed: ${String(e)}`, { cause: e });
  }
}

function check(fn: () => void, what: string): void {
  try {
    fn();
  } catch (e) {
    throw new FerryError('SERVER_REPOSITORY', `${what}: ${(e as Error).message}`, { cause: e });
  }
}

async function walkRoot(fetchFile: Fetch, trusted: Buffer): Promise<Metadata<Root>> {
  let root = parse(MetadataKind.Root, trusted, 'trusted root');
  for (let i = 0; i < MAX_ROOT_ROTATIONS; i++) {
    const next = await fetchFile(`metadata/${root.signed.version + 1}.root.json`, LIMITS.root);
    if (!next) break;
    const n = parse(MetadataKind.Root, next, 'root');
    // TUF 5.3.4: the new root is signed by the old root's keys and by its own.
    check(() => root.verifyDelegate('root', n), `root ${n.signed.version}`);
    check(() => n.verifyDelegate('root', n), `root ${n.signed.version}`);
    if (n.signed.version !== root.signed.version + 1)
      throw new FerryError('SERVER_REPOSITORY', 'root version is not one above the previous');
    root = n;
  }
  if (root.signed.isExpired()) throw new FerryError('SERVER_REPOSITORY', 'root has expired');
  return root;
}

function verifyMeta(meta: MetaFile | undefined, bytes: Buffer, what: string): void {
  if (!meta) throw new FerryError('SERVER_REPOSITORY', `${what} is not listed`);
  check(() => meta.verify(bytes), what);
}

async function loadRole(
  fetchFile: Fetch,
  parent: Metadata<Root> | Metadata<Targets>,
  role: string,
  meta: MetaFile | undefined,
): Promise<Metadata<Targets>> {
  const file = `metadata/${meta?.version ?? 0}.${role}.json`;
  const bytes = await need(fetchFile, file, LIMITS.targets);
  verifyMeta(meta, bytes, file);
  const md = parse(MetadataKind.Targets, bytes, file) as unknown as Metadata<Targets>;
  check(() => parent.verifyDelegate(role, md), role);
  if (md.signed.version !== meta?.version || md.signed.isExpired())
    throw new FerryError('SERVER_REPOSITORY', `${role} has the wrong version or has expired`);
  return md;
}

function releaseOf(channel: string, t: TargetFile): RepositoryRelease | undefined {
  const c = t.custom;
  const sha = t.hashes.sha256;
  if (!t.path.endsWith('/manifest.json') || !sha) return undefined;
  if (typeof c.compatible !== 'string' || typeof c.version !== 'string') return undefined;
  if (typeof c.releaseCounter !== 'number' || !Number.isSafeInteger(c.releaseCounter))
    return undefined;
  return {
    channel,
    compatible: c.compatible,
    version: c.version,
    releaseCounter: c.releaseCounter,
    manifestPath: t.path,
    manifestSha256: sha,
    manifestLength: t.length,
  };
}

/**
 * Every release of every channel in the repository at `source`, verified from `trustedRoot`
 * (the bytes of a root.json the operator trusts; by default the repository's own
 * `metadata/1.root.json`: trust on first use). SERVER_REPOSITORY on any failure.
 *
 * @example
 * const releases = await readRepositoryReleases('/srv/ferry');
 */
export async function readRepositoryReleases(
  source: string,
  trustedRoot?: Buffer,
): Promise<RepositoryRelease[]> {
  const fetchFile = fetcherFor(source);
  const root = await walkRoot(
    fetchFile,
    trustedRoot ?? (await need(fetchFile, 'metadata/1.root.json', LIMITS.root)),
  );
  const tsBytes = await need(fetchFile, 'metadata/timestamp.json', LIMITS.timestamp);
  const ts = parse(MetadataKind.Timestamp, tsBytes, 'timestamp') as unknown as Metadata<Timestamp>;
  check(() => root.verifyDelegate('timestamp', ts), 'timestamp');
  if (ts.signed.isExpired()) throw new FerryError('SERVER_REPOSITORY', 'timestamp has expired');
  const snapMeta = ts.signed.snapshotMeta;
  const snapFile = `metadata/${snapMeta.version}.snapshot.json`;
  const snapBytes = await need(fetchFile, snapFile, LIMITS.snapshot);
  verifyMeta(snapMeta, snapBytes, snapFile);
  const snap = parse(MetadataKind.Snapshot, snapBytes, 'snapshot') as unknown as Metadata<Snapshot>;
  check(() => root.verifyDelegate('snapshot', snap), 'snapshot');
  if (snap.signed.isExpired()) throw new FerryError('SERVER_REPOSITORY', 'snapshot has expired');
  const targets = await loadRole(fetchFile, root, 'targets', snap.signed.meta['targets.json']);
  const out: RepositoryRelease[] = [];
  for (const role of Object.keys(targets.signed.delegations?.roles ?? {}).sort()) {
    if (!role.startsWith('channel-')) continue;
    const md = await loadRole(fetchFile, targets, role, snap.signed.meta[`${role}.json`]);
    const channel = role.slice('channel-'.length);
    for (const t of Object.values(md.signed.targets)) {
      const r = releaseOf(channel, t);
      // A role may only sign inside its own channel directory (its delegation's path pattern).
      if (r && r.manifestPath.startsWith(`channels/${channel}/`)) out.push(r);
    }
  }
  return out;
}
