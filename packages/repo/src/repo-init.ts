/**
 * Creating a repository: version 1 of root, targets, snapshot and timestamp, an empty chunk
 * store and target directory, and the operator settings. The result is already a valid TUF
 * repository that any static web server can serve.
 */
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Metadata, Root, Snapshot, Targets, Timestamp } from '@tufjs/models';
import { FerryError, withContext, writeFileAtomic, type PrivateKey } from '@ferry/core';
import {
  DEFAULT_EXPIRY,
  METADATA_DIR,
  REPO_CONFIG_FILE,
  SPEC_VERSION,
  TARGETS_DIR,
  expiresAt,
  type RepoExpiry,
} from './repo-layout.ts';
import { metaFileOf } from './repo-commit.ts';
import { checkExpiry, writeMetadata, type RepoConfig } from './repo-state.ts';
import { signRole, tufKey, type Json } from './tuf-key.ts';

/** The four top-level roles' keys; root and targets may have several (threshold signing). */
export interface RepoKeys {
  root: PrivateKey[];
  targets: PrivateKey[];
  snapshot: PrivateKey;
  timestamp: PrivateKey;
}

/** Options of initRepo. */
export interface InitRepoOptions {
  keys: RepoKeys;
  /** Signatures required: root and targets default to 1. */
  thresholds?: { root?: number; targets?: number };
  /** Validity periods in days; defaults in DEFAULT_EXPIRY. Stored for later commands. */
  expiry?: Partial<RepoExpiry>;
  now?: Date;
}

/** What initRepo wrote. */
export interface InitRepoResult {
  /** TUF key ids per role (not Ferry key ids; see tuf-key.ts). */
  keyIds: Record<'root' | 'targets' | 'snapshot' | 'timestamp', string[]>;
  expires: Record<'root' | 'targets' | 'snapshot' | 'timestamp', string>;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

function makeRoot(opts: InitRepoOptions, expiry: RepoExpiry, now: Date): Root {
  const keys: Record<string, Json> = {};
  const role = (list: PrivateKey[], threshold = 1): Json => {
    const ids = [
      ...new Set(list.map((k) => tufKey(k)).map((k) => ((keys[k.keyID] = k.toJSON()), k.keyID))),
    ];
    if (!Number.isSafeInteger(threshold) || threshold < 1 || threshold > ids.length)
      throw new FerryError('USAGE', `threshold ${threshold} is not between 1 and ${ids.length}`);
    return { keyids: ids, threshold };
  };
  const { root, targets, snapshot, timestamp } = opts.keys;
  return Root.fromJSON({
    _type: 'root',
    spec_version: SPEC_VERSION,
    version: 1,
    expires: expiresAt(now, expiry.root),
    consistent_snapshot: true,
    keys,
    roles: {
      root: role(root, opts.thresholds?.root),
      targets: role(targets, opts.thresholds?.targets),
      snapshot: role([snapshot]),
      timestamp: role([timestamp]),
    },
  });
}

/**
 * Creates a repository in `dir` (empty or missing). Throws REPO_EXISTS if one is there,
 * USAGE for a bad threshold or expiry, REPO_SIGNING_KEYS if keys cannot meet a threshold.
 *
 * @example
 * await initRepo('/srv/ferry', { keys: { root: [r1, r2, r3], targets: [t], snapshot: s,
 *   timestamp: ts }, thresholds: { root: 2 } });
 */
export async function initRepo(dir: string, opts: InitRepoOptions): Promise<InitRepoResult> {
  if (
    (await exists(join(dir, REPO_CONFIG_FILE))) ||
    (await exists(join(dir, METADATA_DIR, '1.root.json')))
  )
    throw new FerryError('REPO_EXISTS', `${dir} already holds a repository`);
  const now = opts.now ?? new Date();
  const expiry = checkExpiry({ ...DEFAULT_EXPIRY, ...opts.expiry });
  const rootSigned = makeRoot(opts, expiry, now);
  const root = new Metadata(rootSigned);
  signRole(root, 'root', rootSigned.roles.root!, opts.keys.root);
  const targets = new Metadata(
    new Targets({ version: 1, specVersion: SPEC_VERSION, expires: expiresAt(now, expiry.targets) }),
  );
  signRole(targets, 'targets', rootSigned.roles.targets!, opts.keys.targets);
  try {
    for (const sub of [METADATA_DIR, TARGETS_DIR, 'chunks'])
      await mkdir(join(dir, sub), { recursive: true });
    const config: RepoConfig = { format: 1, expiry };
    await writeFileAtomic(join(dir, REPO_CONFIG_FILE), `${JSON.stringify(config, null, 2)}\n`);
  } catch (e) {
    throw withContext(`creating ${dir}`, e);
  }
  await writeMetadata(dir, 'root', root);
  await writeMetadata(dir, 'root', root, false);
  const targetsBytes = await writeMetadata(dir, 'targets', targets);
  const snapshot = new Metadata(
    new Snapshot({
      version: 1,
      specVersion: SPEC_VERSION,
      expires: expiresAt(now, expiry.snapshot),
      meta: { 'targets.json': metaFileOf(1, targetsBytes) },
    }),
  );
  signRole(snapshot, 'snapshot', rootSigned.roles.snapshot!, [opts.keys.snapshot]);
  const snapshotBytes = await writeMetadata(dir, 'snapshot', snapshot);
  const timestamp = new Metadata(
    new Timestamp({
      version: 1,
      specVersion: SPEC_VERSION,
      expires: expiresAt(now, expiry.timestamp),
      snapshotMeta: metaFileOf(1, snapshotBytes),
    }),
  );
  signRole(timestamp, 'timestamp', rootSigned.roles.timestamp!, [opts.keys.timestamp]);
  await writeMetadata(dir, 'timestamp', timestamp, false);
  const ids = (r: string) => rootSigned.roles[r]!.keyIDs;
  return {
    keyIds: {
      root: ids('root'),
      targets: ids('targets'),
      snapshot: ids('snapshot'),
      timestamp: ids('timestamp'),
    },
    expires: {
      root: rootSigned.expires,
      targets: targets.signed.expires,
      snapshot: snapshot.signed.expires,
      timestamp: timestamp.signed.expires,
    },
  };
}
