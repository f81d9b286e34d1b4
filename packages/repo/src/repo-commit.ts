/**
 * Publishing a new consistent snapshot: changed channel roles, then targets, then snapshot, and
 * timestamp.json last. Every file but timestamp.json has a new versioned name, so a client sees
 * the old repository or the new one, never a mix (TUF consistent snapshots); replacing
 * timestamp.json atomically is the commit point.
 */
import { createHash } from 'node:crypto';
import { Metadata, MetaFile, Snapshot, Targets, Timestamp, type TargetFile } from '@tufjs/models';
import { FerryError, type PrivateKey } from '@ferry/core';
import { SPEC_VERSION, channelOfRole, expiresAt } from './repo-layout.ts';
import { writeMetadata, type RepoState } from './repo-state.ts';
import { signRole, type Json, type RoleKeys } from './tuf-key.ts';

/** The keys a command that changes targets signs with. */
export interface SigningKeys {
  /** Targets keys: sign `targets` and, by default, every channel role. */
  targets?: PrivateKey[];
  /** Keys of channels that have their own (see delegateChannel), by channel name. */
  channels?: Record<string, PrivateKey[]>;
  snapshot: PrivateKey;
  timestamp: PrivateKey;
}

/** What changes in one commit. */
export interface RepoChange {
  /** New target maps of delegated roles, by role name. */
  roles?: Map<string, Record<string, TargetFile>>;
  /** New delegations of the top-level targets role, as JSON (re-signs targets). */
  delegations?: Json;
  /** Re-sign targets even if its content is unchanged (key rotation, expiry renewal). */
  resignTargets?: boolean;
}

/** A targets object with the next version and a fresh expiry. */
export function nextTargets(
  old: Targets,
  expires: string,
  changes: { targets?: Record<string, TargetFile>; delegations?: Json } = {},
): Targets {
  const json = old.toJSON();
  json.version = old.version + 1;
  json.expires = expires;
  if (changes.targets)
    json.targets = Object.fromEntries(
      Object.entries(changes.targets).map(([path, t]) => [path, t.toJSON()]),
    );
  if (changes.delegations) json.delegations = changes.delegations;
  return Targets.fromJSON(json);
}

/** Snapshot/timestamp entry for a metadata file: version, length and SHA-256. */
export function metaFileOf(version: number, bytes: Buffer): MetaFile {
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  return new MetaFile({ version, length: bytes.length, hashes: { sha256 } });
}

function delegatedRole(targets: Targets, name: string): RoleKeys {
  const role = targets.delegations?.roles?.[name];
  if (!role) throw new FerryError('REPO_INVALID', `targets delegates no role ${name}`);
  return role;
}

function roleKeys(keys: SigningKeys, roleName: string): PrivateKey[] {
  const channel = channelOfRole(roleName);
  return [...((channel && keys.channels?.[channel]) || []), ...(keys.targets ?? [])];
}

/**
 * Signs and writes the changed roles, then a new snapshot and timestamp. Returns the new state.
 *
 * @example
 * await commit(state, { roles: new Map([['channel-stable', targetsMap]]) }, keys, new Date());
 */
export async function commit(
  state: RepoState,
  change: RepoChange,
  keys: SigningKeys,
  now: Date,
): Promise<RepoState> {
  const { dir, config, root } = state;
  const meta: Record<string, MetaFile> = { ...state.snapshot.signed.meta };
  const targetsExpiry = expiresAt(now, config.expiry.targets);
  let targets = state.targets;
  if (change.delegations || change.resignTargets) {
    const signed = nextTargets(targets.signed, targetsExpiry, { delegations: change.delegations });
    targets = new Metadata(signed);
    signRole(targets, 'targets', root.signed.roles.targets!, keys.targets ?? []);
  }
  const roles = new Map(state.roles);
  for (const [name, map] of change.roles ?? []) {
    const old = state.roles.get(name)?.signed;
    const signed = old
      ? nextTargets(old, targetsExpiry, { targets: map })
      : new Targets({
          version: 1,
          specVersion: SPEC_VERSION,
          expires: targetsExpiry,
          targets: map,
        });
    const md = new Metadata(signed);
    signRole(md, name, delegatedRole(targets.signed, name), roleKeys(keys, name));
    meta[`${name}.json`] = metaFileOf(signed.version, await writeMetadata(dir, name, md));
    roles.set(name, md);
  }
  if (targets !== state.targets)
    meta['targets.json'] = metaFileOf(
      targets.signed.version,
      await writeMetadata(dir, 'targets', targets),
    );
  return commitSnapshot({ ...state, targets, roles }, meta, keys, now);
}

/** Writes snapshot N+1 with `meta`, then timestamp N+1 pointing at it. */
export async function commitSnapshot(
  state: RepoState,
  meta: Record<string, MetaFile>,
  keys: Pick<SigningKeys, 'snapshot' | 'timestamp'>,
  now: Date,
): Promise<RepoState> {
  const { dir, config, root } = state;
  const snapshot = new Metadata(
    new Snapshot({
      version: state.snapshot.signed.version + 1,
      specVersion: state.snapshot.signed.specVersion,
      expires: expiresAt(now, config.expiry.snapshot),
      meta,
    }),
  );
  signRole(snapshot, 'snapshot', root.signed.roles.snapshot!, [keys.snapshot]);
  const snapshotBytes = await writeMetadata(dir, 'snapshot', snapshot);
  const timestamp = new Metadata(
    new Timestamp({
      version: state.timestamp.signed.version + 1,
      specVersion: state.timestamp.signed.specVersion,
      expires: expiresAt(now, config.expiry.timestamp),
      snapshotMeta: metaFileOf(snapshot.signed.version, snapshotBytes),
    }),
  );
  signRole(timestamp, 'timestamp', root.signed.roles.timestamp!, [keys.timestamp]);
  // Commit point: the one file replaced in place.
  await writeMetadata(dir, 'timestamp', timestamp, false);
  return { ...state, snapshot, timestamp };
}
