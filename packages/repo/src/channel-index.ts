/**
 * The channel index: one target per channel and compatible,
 * `channels/<channel>/<compatible>/index/releases.json`, listing the channel's releases of that
 * compatible. A TUF client can fetch a target by name but cannot list a role's targets, so a
 * device finds its newest release through this file; its bytes are pinned by the channel role
 * like every other target. `index` can never be a release directory: versions are SemVer, which
 * starts with a digit.
 */
import { createHash } from 'node:crypto';
import { TargetFile } from '@tufjs/models';
import { canonicalBytes } from '@ferry/core';
import { checkChannel } from './repo-layout.ts';
import { releasesIn } from './release.ts';
import { storeTargetFile } from './target-file.ts';

/** Format version of releases.json. */
export const CHANNEL_INDEX_FORMAT = 1;

/** One release as the channel index lists it. */
export interface ChannelIndexEntry {
  version: string;
  releaseCounter: number;
  /** Target path of the signed manifest envelope. */
  manifest: string;
  /** Target path of each image's chunk index. */
  chunkIndexes: Record<string, string>;
}

/** The content of `releases.json`. */
export interface ChannelIndex {
  formatVersion: number;
  channel: string;
  compatible: string;
  /** Ascending release counter. */
  releases: ChannelIndexEntry[];
}

/** The target path of the index of `compatible` in `channel`. */
export function channelIndexPath(channel: string, compatible: string): string {
  return `channels/${checkChannel(channel)}/${compatible}/index/releases.json`;
}

/** The index of `compatible` built from a channel role's targets. */
export function buildChannelIndex(
  channel: string,
  compatible: string,
  targets: Record<string, TargetFile>,
): ChannelIndex {
  return {
    formatVersion: CHANNEL_INDEX_FORMAT,
    channel,
    compatible,
    releases: releasesIn(channel, targets)
      .filter((r) => r.compatible === compatible)
      .map((r) => ({
        version: r.version,
        releaseCounter: r.releaseCounter,
        manifest: r.paths[0]!,
        chunkIndexes: r.chunkIndexes,
      })),
  };
}

/**
 * `targets` with the index of `compatible` rebuilt and its file stored: called whenever a
 * release of `compatible` enters `channel`.
 */
export async function withChannelIndex(
  dir: string,
  channel: string,
  compatible: string,
  targets: Record<string, TargetFile>,
): Promise<Record<string, TargetFile>> {
  const path = channelIndexPath(channel, compatible);
  const bytes = canonicalBytes(buildChannelIndex(channel, compatible, targets));
  const target = new TargetFile({
    path,
    length: bytes.length,
    hashes: { sha256: createHash('sha256').update(bytes).digest('hex') },
    unrecognizedFields: { custom: { channelIndex: compatible } },
  });
  await storeTargetFile(dir, target, bytes);
  return { ...targets, [path]: target };
}
