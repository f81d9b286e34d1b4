/**
 * Promoting a release from one channel to another (beta -> stable): its targets are copied under
 * the destination channel's path, with the same bytes, hashes and custom fields, and signed by
 * the destination channel's keys. Chunks are shared, so nothing else is copied.
 */
import { TargetFile } from '@tufjs/models';
import { FerryError } from '@ferry/core';
import { withChannel } from './channel.ts';
import { withChannelIndex } from './channel-index.ts';
import { commit, type SigningKeys } from './repo-commit.ts';
import { channelRoleName, checkChannel, parseReleaseRef, releaseDir } from './repo-layout.ts';
import { readTargetFile, storeTargetFile } from './target-file.ts';
import { loadRepo, withRepoLock } from './repo-state.ts';
import { planRelease, releasesIn } from './release.ts';

/** Options of promote. */
export interface PromoteOptions {
  /** `compatible@version`. */
  release: string;
  from: string;
  to: string;
  keys: SigningKeys;
  /** Promote even if the counter is not above the destination's highest for the compatible. */
  force?: boolean;
  now?: Date;
}

/** What promote did. */
export interface PromoteResult {
  compatible: string;
  version: string;
  releaseCounter: number;
  /** False when the destination already held this very release. */
  promoted: boolean;
  targets: string[];
}

/**
 * Copies a release from channel `from` to channel `to`. Throws REPO_RELEASE_NOT_FOUND,
 * REPO_RELEASE_EXISTS, REPO_RELEASE_COUNTER, REPO_TARGET_MISMATCH (source file damaged).
 *
 * @example
 * await promote('/srv/ferry', { release: 'acme-gw@1.4.0', from: 'beta', to: 'stable', keys });
 */
export async function promote(dir: string, opts: PromoteOptions): Promise<PromoteResult> {
  const from = checkChannel(opts.from);
  const to = checkChannel(opts.to);
  const { compatible, version } = parseReleaseRef(opts.release);
  return withRepoLock(dir, async () => {
    const state = await loadRepo(dir);
    const source = state.roles.get(channelRoleName(from))?.signed.targets ?? {};
    const release = releasesIn(from, source).find(
      (r) => r.compatible === compatible && r.version === version,
    );
    if (!release)
      throw new FerryError('REPO_RELEASE_NOT_FOUND', `${from} has no ${compatible}@${version}`);
    const srcDir = releaseDir(from, compatible, version);
    const dstDir = releaseDir(to, compatible, version);
    const targets: TargetFile[] = [];
    for (const path of release.paths) {
      const t = source[path]!;
      const copy = new TargetFile({
        path: dstDir + path.slice(srcDir.length),
        length: t.length,
        hashes: t.hashes,
        unrecognizedFields: t.unrecognizedFields,
      });
      const bytes = await readTargetFile(dir, t);
      await storeTargetFile(dir, copy, bytes);
      targets.push(copy);
    }
    const role = channelRoleName(to);
    const existing = state.roles.get(role)?.signed.targets ?? {};
    const custom = { compatible, version, releaseCounter: release.releaseCounter };
    const plan = planRelease(to, existing, custom, targets, opts.force);
    if (plan === 'add') {
      const map = await withChannelIndex(dir, to, compatible, {
        ...existing,
        ...Object.fromEntries(targets.map((t) => [t.path, t])),
      });
      const delegations = state.roles.has(role)
        ? undefined
        : withChannel(state.targets.signed, state.root.signed, to);
      await commit(
        state,
        { roles: new Map([[role, map]]), delegations },
        opts.keys,
        opts.now ?? new Date(),
      );
    }
    return { ...custom, promoted: plan === 'add', targets: targets.map((t) => t.path) };
  });
}
