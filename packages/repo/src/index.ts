export * from './repo-layout.ts';
export { tufKey, tufKeyId } from './tuf-key.ts';
export { readConfig, type RepoConfig } from './repo-state.ts';
export type { SigningKeys } from './repo-commit.ts';
export * from './repo-init.ts';
export { delegateChannel, type DelegateChannelOptions } from './channel.ts';
export {
  listRepoReleases,
  releasesIn,
  planRelease,
  type ReleaseCustom,
  type PublishedRelease,
} from './release.ts';
export * from './repo-publish.ts';
export * from './repo-promote.ts';
export * from './repo-refresh.ts';
export * from './repo-keys.ts';
export * from './repo-gc.ts';
export * from './repo-verify.ts';
export * from './channel-index.ts';
export * from './repo-delta.ts';
export * from './repo-tree.ts';
