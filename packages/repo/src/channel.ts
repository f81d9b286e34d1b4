/**
 * Channels (stable, beta, nightly, ...): each is a delegated targets role `channel-<name>` with
 * one parent, the top-level targets role, trusted only for `channels/<name>/*\/*\/*`. By default
 * a channel is signed by the targets keys; `delegateChannel` gives one its own keys, so an
 * online CI key can sign nightly while stable stays with offline keys.
 */
import type { Key, Root, Targets } from '@tufjs/models';
import { FerryError, type PrivateKey } from '@ferry/core';
import { commit, type SigningKeys } from './repo-commit.ts';
import { channelOfRole, channelPathPattern, channelRoleName } from './repo-layout.ts';
import { loadRepo, withRepoLock, type RepoState } from './repo-state.ts';
import { tufKey, type Json } from './tuf-key.ts';

/** A delegated role as TUF JSON. */
export interface DelegatedRoleJson {
  name: string;
  keyids: string[];
  threshold: number;
  terminating: boolean;
  paths: string[];
  [field: string]: Json[string];
}

/** The delegations of a targets role as TUF JSON (`{keys, roles}`), empty if it has none. */
export interface DelegationsJson {
  keys: Record<string, Json>;
  roles: DelegatedRoleJson[];
}

/** The delegations of `targets` as JSON. */
export function delegationsOf(targets: Targets): DelegationsJson {
  const json = targets.delegations?.toJSON() as Partial<DelegationsJson> | undefined;
  return { keys: { ...json?.keys }, roles: [...(json?.roles ?? [])] };
}

/** `d` with `role` set (replacing one of the same name in place) and unused keys dropped. */
export function setDelegation(
  d: DelegationsJson,
  role: DelegatedRoleJson,
  keys: Key[],
): DelegationsJson {
  const at = d.roles.findIndex((r) => r.name === role.name);
  const roles = at < 0 ? [...d.roles, role] : d.roles.map((r, i) => (i === at ? role : r));
  const all: Record<string, Json> = { ...d.keys };
  for (const k of keys) all[k.keyID] = k.toJSON();
  const used = new Set(roles.flatMap((r) => r.keyids));
  return { keys: Object.fromEntries(Object.entries(all).filter(([id]) => used.has(id))), roles };
}

/**
 * The delegations of `targets` with `channel` delegated to `keys` (default: the targets keys
 * and threshold of `root`). A channel already delegated is replaced in place.
 */
export function withChannel(
  targets: Targets,
  root: Root,
  channel: string,
  keys?: { keys: Key[]; threshold: number },
): Json {
  const targetsRole = root.roles.targets!;
  const use = keys ?? {
    keys: targetsRole.keyIDs.map((id) => root.keys[id]!),
    threshold: targetsRole.threshold,
  };
  const role: DelegatedRoleJson = {
    name: channelRoleName(channel),
    keyids: use.keys.map((k) => k.keyID),
    threshold: use.threshold,
    // Terminating: a target under channels/<name>/ is never looked up anywhere else.
    terminating: true,
    paths: [channelPathPattern(channel)],
  };
  return setDelegation(delegationsOf(targets), role, use.keys) as unknown as Json;
}

/** The channels a repository has, by name. */
export function channelsOf(state: RepoState): string[] {
  return [...state.roles.keys()].flatMap((r) => channelOfRole(r) ?? []).sort();
}

/** Options of delegateChannel. */
export interface DelegateChannelOptions {
  channel: string;
  /** The channel's own keys (private: the channel role is re-signed with them at once). */
  channelKeys: PrivateKey[];
  threshold?: number;
  /** Targets keys (the delegation is in targets), snapshot and timestamp keys. */
  keys: SigningKeys;
  now?: Date;
}

/**
 * Creates `channel`, or moves it to its own keys: targets is re-signed with the new delegation,
 * and the channel's current releases are re-signed with `channelKeys`.
 *
 * @example
 * await delegateChannel('/srv/ferry', { channel: 'nightly', channelKeys: [ciKey],
 *   keys: { targets: [targetsKey], snapshot, timestamp } });
 */
export async function delegateChannel(dir: string, opts: DelegateChannelOptions): Promise<void> {
  const threshold = opts.threshold ?? 1;
  const keys = [...new Map(opts.channelKeys.map((k) => [tufKey(k).keyID, tufKey(k)])).values()];
  if (!Number.isSafeInteger(threshold) || threshold < 1 || threshold > keys.length)
    throw new FerryError('USAGE', `threshold ${threshold} is not between 1 and ${keys.length}`);
  await withRepoLock(dir, async () => {
    const state = await loadRepo(dir);
    const name = channelRoleName(opts.channel);
    const delegations = withChannel(state.targets.signed, state.root.signed, opts.channel, {
      keys,
      threshold,
    });
    const current = state.roles.get(name)?.signed.targets ?? {};
    const signing: SigningKeys = {
      ...opts.keys,
      channels: { ...opts.keys.channels, [opts.channel]: opts.channelKeys },
    };
    await commit(
      state,
      { delegations, roles: new Map([[name, current]]) },
      signing,
      opts.now ?? new Date(),
    );
  });
}
