/**
 * Key rotation. Every rotation writes root N+1 (`metadata/N+1.root.json`, and `root.json`). For
 * root itself, N+1 is signed by a threshold of the old root keys AND a threshold of the new ones
 * (TUF 5.3.4), so a client holding root N can walk to N+1 and the new keys alone can sign N+2.
 * For targets, snapshot and timestamp, root N+1 lists the new keys and the role is re-signed
 * with them at once; channels that used the old targets keys follow to the new ones.
 */
import { Metadata, Root, type Key } from '@tufjs/models';
import { delegationsOf, setDelegation } from './channel.ts';
import { FerryError, type PrivateKey } from '@ferry/core';
import { commit, commitSnapshot } from './repo-commit.ts';
import { expiresAt } from './repo-layout.ts';
import { loadRepo, withRepoLock, writeMetadata, type RepoState } from './repo-state.ts';
import { signRole, tufKey, type Json } from './tuf-key.ts';

/** A top-level role whose keys can be rotated. */
export type TopLevelRole = 'root' | 'targets' | 'snapshot' | 'timestamp';

/** Options of rotateKeys. */
export interface RotateKeysOptions {
  /** Current root keys, at least the root threshold of them: they sign root N+1. */
  rootKeys: PrivateKey[];
  /** The role's new keys, private because they sign at once. One key for snapshot/timestamp. */
  newKeys: PrivateKey[];
  /** Signatures the role will need (default 1). */
  threshold?: number;
  /** Online keys re-signing snapshot and timestamp (the one not being rotated). */
  snapshotKey?: PrivateKey;
  timestampKey?: PrivateKey;
  now?: Date;
}

/** What rotateKeys wrote. */
export interface RotateKeysResult {
  rootVersion: number;
  /** TUF key ids the role now has. */
  keyIds: string[];
}

function newRoot(
  old: Root,
  role: TopLevelRole,
  keys: Key[],
  threshold: number,
  expires: string,
): Root {
  const json = old.toJSON() as Json & { keys: Record<string, Json>; roles: Record<string, Json> };
  const roles = { ...json.roles, [role]: { keyids: keys.map((k) => k.keyID), threshold } };
  const all: Record<string, Json> = { ...json.keys };
  for (const k of keys) all[k.keyID] = k.toJSON();
  const used = new Set(Object.values(roles).flatMap((r) => r.keyids as string[]));
  return Root.fromJSON({
    ...json,
    version: old.version + 1,
    expires,
    keys: Object.fromEntries(Object.entries(all).filter(([id]) => used.has(id))),
    roles,
  });
}

/** Channel delegations that used exactly the old targets keys now use the new ones. */
function followTargetsKeys(
  state: RepoState,
  root: Root,
): { delegations?: Json; followed: string[] } {
  let d = delegationsOf(state.targets.signed);
  const oldIds = [...state.root.signed.roles.targets!.keyIDs].sort().join();
  const role = root.roles.targets!;
  const keys = role.keyIDs.map((id) => root.keys[id]!);
  const followed = d.roles.filter((r) => [...r.keyids].sort().join() === oldIds);
  for (const r of followed)
    d = setDelegation(d, { ...r, keyids: role.keyIDs, threshold: role.threshold }, keys);
  if (followed.length === 0) return { followed: [] };
  return { delegations: d as unknown as Json, followed: followed.map((r) => r.name) };
}

function need(key: PrivateKey | undefined, what: string): PrivateKey {
  if (!key) throw new FerryError('USAGE', `rotating needs the ${what} key`);
  return key;
}

/**
 * Rotates the keys of `role`. Throws USAGE for a bad threshold or a missing online key,
 * REPO_SIGNING_KEYS if `rootKeys` (or the new keys) cannot meet a threshold; every signature is
 * checked before the first file is written.
 *
 * @example
 * await rotateKeys('/srv/ferry', 'root', { rootKeys: [oldRoot], newKeys: [r1, r2, r3], threshold: 2 });
 */
export async function rotateKeys(
  dir: string,
  role: TopLevelRole,
  opts: RotateKeysOptions,
): Promise<RotateKeysResult> {
  const keys = [...new Map(opts.newKeys.map((k) => [tufKey(k).keyID, tufKey(k)])).values()];
  const threshold = opts.threshold ?? 1;
  if (!Number.isSafeInteger(threshold) || threshold < 1 || threshold > keys.length)
    throw new FerryError('USAGE', `threshold ${threshold} is not between 1 and ${keys.length}`);
  if ((role === 'snapshot' || role === 'timestamp') && keys.length !== 1)
    throw new FerryError('USAGE', `${role} takes exactly one key`);
  return withRepoLock(dir, async () => {
    const state = await loadRepo(dir);
    const now = opts.now ?? new Date();
    const old = state.root.signed;
    const signed = newRoot(old, role, keys, threshold, expiresAt(now, state.config.expiry.root));
    const root = new Metadata(signed);
    signRole(root, 'root (current keys)', old.roles.root!, opts.rootKeys);
    if (role === 'root') signRole(root, 'root (new keys)', signed.roles.root!, opts.newKeys, true);
    const snapshotKey = role === 'snapshot' ? opts.newKeys[0] : opts.snapshotKey;
    const timestampKey = role === 'timestamp' ? opts.newKeys[0] : opts.timestampKey;
    if (role !== 'root') {
      // Dry run before anything is written: a half rotation would strand every client.
      const s = need(snapshotKey, 'snapshot');
      const t = need(timestampKey, 'timestamp');
      signRole(new Metadata(state.snapshot.signed), 'snapshot', signed.roles.snapshot!, [s]);
      signRole(new Metadata(state.timestamp.signed), 'timestamp', signed.roles.timestamp!, [t]);
      if (role === 'targets')
        signRole(
          new Metadata(state.targets.signed),
          'targets',
          signed.roles.targets!,
          opts.newKeys,
        );
    }
    await writeMetadata(dir, 'root', root);
    await writeMetadata(dir, 'root', root, false);
    const next: RepoState = { ...state, root };
    if (role === 'targets') {
      const { delegations, followed } = followTargetsKeys(state, signed);
      const roles = new Map(followed.map((n) => [n, state.roles.get(n)!.signed.targets]));
      const online = { snapshot: snapshotKey!, timestamp: timestampKey! };
      await commit(
        next,
        { resignTargets: true, delegations, roles },
        { targets: opts.newKeys, ...online },
        now,
      );
    } else if (role !== 'root')
      await commitSnapshot(
        next,
        { ...state.snapshot.signed.meta },
        { snapshot: snapshotKey!, timestamp: timestampKey! },
        now,
      );
    return { rootVersion: signed.version, keyIds: signed.roles[role]!.keyIDs };
  });
}
