/**
 * Releases as TUF targets. A release in a channel is the target
 * `channels/<channel>/<compatible>/<version>/manifest.json` (the signed manifest envelope, with
 * custom {compatible, version, releaseCounter}) plus one `<image>.cidx` target per image (its
 * chunk index). Deciding whether a release may be added is a pure function (planRelease).
 */
import { createHash } from 'node:crypto';
import { TargetFile } from '@tufjs/models';
import { FerryError } from '@ferry/core';
import { CHUNK_INDEX_SUFFIX, MANIFEST_TARGET, channelOfRole, releaseDir } from './repo-layout.ts';
import { loadRepo, type RepoState } from './repo-state.ts';
import type { Json } from './tuf-key.ts';

/** The custom fields of a manifest target: enough to pick the newest release for a device. */
export interface ReleaseCustom {
  compatible: string;
  version: string;
  releaseCounter: number;
}

/** One release in one channel, as its targets describe it. */
export interface PublishedRelease extends ReleaseCustom {
  channel: string;
  /** The target paths of the release: manifest first, then the chunk indexes. */
  paths: string[];
  /** Chunk index target path by image name. */
  chunkIndexes: Record<string, string>;
}

/** A file to publish as a target. */
export interface ReleaseFile {
  name: string;
  bytes: Buffer;
}

function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

/** The targets of one release in `channel`, built from the manifest envelope and indexes. */
export function releaseTargets(
  channel: string,
  custom: ReleaseCustom,
  envelope: Buffer,
  chunkIndexes: Map<string, Buffer>,
): { targets: TargetFile[]; files: Array<{ target: TargetFile; bytes: Buffer }> } {
  const dir = releaseDir(channel, custom.compatible, custom.version);
  const file = (name: string, bytes: Buffer, extra?: Json) => ({
    target: new TargetFile({
      path: `${dir}/${name}`,
      length: bytes.length,
      hashes: { sha256: sha256(bytes) },
      ...(extra ? { unrecognizedFields: { custom: extra } } : {}),
    }),
    bytes,
  });
  const files = [file(MANIFEST_TARGET, envelope, { ...custom })];
  for (const [image, bytes] of [...chunkIndexes].sort(([a], [b]) => (a < b ? -1 : 1)))
    files.push(file(image + CHUNK_INDEX_SUFFIX, bytes, { image }));
  return { targets: files.map((f) => f.target), files };
}

function customOf(t: TargetFile): ReleaseCustom | undefined {
  const c = t.custom;
  if (
    typeof c.compatible === 'string' &&
    typeof c.version === 'string' &&
    typeof c.releaseCounter === 'number'
  )
    return { compatible: c.compatible, version: c.version, releaseCounter: c.releaseCounter };
  return undefined;
}

/** The releases of one channel role's targets. */
export function releasesIn(
  channel: string,
  targets: Record<string, TargetFile>,
): PublishedRelease[] {
  const byDir = new Map<string, PublishedRelease>();
  const all = Object.values(targets);
  for (const t of all) {
    const custom = t.path.endsWith(`/${MANIFEST_TARGET}`) ? customOf(t) : undefined;
    if (custom)
      byDir.set(t.path.slice(0, -MANIFEST_TARGET.length), {
        channel,
        ...custom,
        paths: [t.path],
        chunkIndexes: {},
      });
  }
  for (const t of all) {
    const slash = t.path.lastIndexOf('/');
    const release = byDir.get(t.path.slice(0, slash + 1));
    const name = t.path.slice(slash + 1);
    if (!release || !name.endsWith(CHUNK_INDEX_SUFFIX)) continue;
    release.paths.push(t.path);
    release.chunkIndexes[name.slice(0, -CHUNK_INDEX_SUFFIX.length)] = t.path;
  }
  return [...byDir.values()].sort((a, b) => a.releaseCounter - b.releaseCounter);
}

/** Every release in every channel of the repository. */
export function listReleases(state: RepoState): PublishedRelease[] {
  return [...state.roles].flatMap(([role, md]) => {
    const channel = channelOfRole(role);
    return channel ? releasesIn(channel, md.signed.targets) : [];
  });
}

/**
 * Whether `release` may be added to a channel holding `existing` targets: 'present' if the very
 * same targets are there (idempotent), 'add' otherwise. Throws REPO_RELEASE_EXISTS for another
 * release under the same compatible and version, REPO_RELEASE_COUNTER (unless `force`) for a
 * counter not above every counter of the compatible in the channel: devices refuse such a
 * release anyway (rollback protection), so publishing it would only strand them.
 */
export function planRelease(
  channel: string,
  existing: Record<string, TargetFile>,
  custom: ReleaseCustom,
  targets: TargetFile[],
  force = false,
): 'present' | 'add' {
  const same = targets.every((t) => existing[t.path]?.equals(t));
  const releases = releasesIn(channel, existing).filter((r) => r.compatible === custom.compatible);
  const twin = releases.find((r) => r.version === custom.version);
  if (twin) {
    if (same && twin.paths.length === targets.length) return 'present';
    throw new FerryError(
      'REPO_RELEASE_EXISTS',
      `${channel} already has a different ${custom.compatible}@${custom.version}`,
    );
  }
  const highest = Math.max(-1, ...releases.map((r) => r.releaseCounter));
  if (!force && custom.releaseCounter <= highest)
    throw new FerryError(
      'REPO_RELEASE_COUNTER',
      `release counter ${custom.releaseCounter} is not above ${highest}, the highest of ` +
        `${custom.compatible} in ${channel} (force to publish anyway)`,
    );
  return 'add';
}

/**
 * Every release in every channel of the repository in `dir`, from its current metadata
 * (not verified: use verifyRepo for that).
 *
 * @example
 * for (const r of await listRepoReleases('/srv/ferry')) console.log(r.channel, r.version);
 */
export async function listRepoReleases(dir: string): Promise<PublishedRelease[]> {
  return listReleases(await loadRepo(dir));
}
