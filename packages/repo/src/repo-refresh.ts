/**
 * Refreshing the online roles: a new snapshot and timestamp with the next versions and fresh
 * expiry dates, nothing else changed. Run it from cron well within the timestamp period (default
 * 1 day): a client refuses an expired timestamp (freeze attack), so a missed refresh stops
 * updates.
 */
import type { PrivateKey } from '@ferry/core';
import { commit, commitSnapshot, type SigningKeys } from './repo-commit.ts';
import { loadRepo, withRepoLock } from './repo-state.ts';

/** Options of refresh. */
export interface RefreshOptions {
  snapshotKey: PrivateKey;
  timestampKey: PrivateKey;
  now?: Date;
}

/** What refresh wrote. */
export interface RefreshResult {
  snapshotVersion: number;
  timestampVersion: number;
  snapshotExpires: string;
  timestampExpires: string;
}

/**
 * Re-signs snapshot and timestamp with new versions and expiry. Throws REPO_SIGNING_KEYS if a
 * key is not the one root names, REPO_LOCKED, REPO_INVALID.
 *
 * @example
 * await refresh('/srv/ferry', { snapshotKey, timestampKey });
 */
export async function refresh(dir: string, opts: RefreshOptions): Promise<RefreshResult> {
  return withRepoLock(dir, async () => {
    const state = await loadRepo(dir);
    const next = await commitSnapshot(
      state,
      { ...state.snapshot.signed.meta },
      { snapshot: opts.snapshotKey, timestamp: opts.timestampKey },
      opts.now ?? new Date(),
    );
    return {
      snapshotVersion: next.snapshot.signed.version,
      timestampVersion: next.timestamp.signed.version,
      snapshotExpires: next.snapshot.signed.expires,
      timestampExpires: next.timestamp.signed.expires,
    };
  });
}

/** Options of renewTargets. */
export interface RenewTargetsOptions {
  /** Targets keys, the keys of channels that have their own, snapshot and timestamp. */
  keys: SigningKeys;
  now?: Date;
}

/**
 * Re-signs targets and every channel role with new versions and a fresh expiry (default 90
 * days), then snapshot and timestamp: the offline counterpart of refresh, due before targets
 * expires. Throws REPO_SIGNING_KEYS if a role's keys are missing.
 *
 * @example
 * await renewTargets('/srv/ferry', { keys: { targets: [t], snapshot, timestamp } });
 */
export async function renewTargets(dir: string, opts: RenewTargetsOptions): Promise<void> {
  await withRepoLock(dir, async () => {
    const state = await loadRepo(dir);
    const roles = new Map([...state.roles].map(([name, md]) => [name, md.signed.targets]));
    await commit(state, { resignTargets: true, roles }, opts.keys, opts.now ?? new Date());
  });
}
