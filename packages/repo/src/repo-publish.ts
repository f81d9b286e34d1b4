/**
 * Publishing a bundle into a channel: verify it completely, copy its chunks into the shared
 * chunk store as they are (zstd frames), write its manifest and chunk indexes as target files,
 * and commit a new consistent snapshot. Publishing the same bundle again changes nothing.
 * With tree sources, each is checked against the tree its image's manifest signs and its file
 * objects and listing are stored too (repo-tree.ts).
 */
import {
  BUNDLE_HEADER_SIZE,
  ChunkStore,
  FileSource,
  openBundle,
  serializeChunkIndex,
  verifyBundle,
  withContext,
  type Keyring,
  type OpenedBundle,
} from '@ferry/core';
import { withChannel } from './channel.ts';
import { withChannelIndex } from './channel-index.ts';
import { commit, type SigningKeys } from './repo-commit.ts';
import { channelRoleName, checkChannel } from './repo-layout.ts';
import { loadRepo, withRepoLock } from './repo-state.ts';
import { storeTargetFile } from './target-file.ts';
import { planRelease, releaseTargets, type ReleaseCustom } from './release.ts';
import {
  prepareTrees,
  storeTree,
  storeTreeDeltas,
  treeDeltaBases,
  type TreePublishResult,
} from './repo-tree.ts';

/** Options of publishBundle. */
export interface PublishOptions {
  channel: string;
  /** Keys the bundle must be signed with: a repository never publishes what devices refuse. */
  keyring: Keyring;
  keys: SigningKeys;
  /** Publish even if the release counter is not above the channel's highest for the compatible. */
  force?: boolean;
  /**
   * Image name -> directory holding that image's tree (the rootfs it was built from, or a
   * read-only mount of it): stores its listing and file objects for deployments. Refused with
   * REPO_TREE_MISMATCH, before anything is written, unless it is the tree the manifest signs.
   */
  trees?: Record<string, string>;
  now?: Date;
}

/** What publishBundle did. */
export interface PublishResult extends ReleaseCustom {
  channel: string;
  /** False when the channel already held this very release (nothing was signed). */
  published: boolean;
  targets: string[];
  /** Distinct chunks of the bundle, those newly stored, and their compressed bytes. */
  chunks: { total: number; added: number; addedBytes: number };
  /** One entry per tree source: the listing and file objects stored. */
  trees: TreePublishResult[];
}

/** Copies every chunk of the bundle not yet in `store`, verifying each frame on the way. */
async function copyChunks(b: OpenedBundle, store: ChunkStore): Promise<PublishResult['chunks']> {
  const sizes = new Map<string, number>();
  for (const img of b.images.values()) for (const c of img.index.chunks) sizes.set(c.id, c.size);
  let added = 0;
  let addedBytes = 0;
  for (const entry of b.payload.values()) {
    if (await store.has(entry.id)) continue;
    const frame = await b.source.read(b.header.payloadOffset + entry.offset, entry.length);
    if ((await store.putCompressed(entry.id, frame, sizes.get(entry.id)!)).written) {
      added++;
      addedBytes += frame.length;
    }
  }
  return { total: b.payload.size, added, addedBytes };
}

/**
 * Publishes the bundle at `bundlePath` into `opts.channel` (created on first use, delegated to
 * the targets keys). Throws the bundle's own codes if it does not verify against `keyring`,
 * REPO_TREE_MISMATCH, REPO_RELEASE_EXISTS, REPO_RELEASE_COUNTER, REPO_SIGNING_KEYS, REPO_LOCKED.
 *
 * @example
 * const r = await publishBundle('/srv/ferry', 'v1.4.0.fbd', { channel: 'stable', keyring,
 *   keys: { targets: [targetsKey], snapshot: snapshotKey, timestamp: timestampKey } });
 * console.log(`${r.chunks.added} of ${r.chunks.total} chunks were new`);
 */
export async function publishBundle(
  dir: string,
  bundlePath: string,
  opts: PublishOptions,
): Promise<PublishResult> {
  const channel = checkChannel(opts.channel);
  const source = new FileSource(bundlePath);
  try {
    return await withRepoLock(dir, async () => {
      const state = await loadRepo(dir);
      await verifyBundle(source, opts.keyring).catch((e: unknown) => {
        throw withContext(`verifying ${bundlePath}`, e);
      });
      const b = await openBundle(source, { keyring: opts.keyring });
      const { compatible, version, releaseCounter } = b.manifest;
      const custom = { compatible, version, releaseCounter };
      const envelope = await source.read(BUNDLE_HEADER_SIZE, b.header.envelopeLength);
      const indexes = new Map([...b.images].map(([n, img]) => [n, serializeChunkIndex(img.index)]));
      const { targets, files } = releaseTargets(channel, custom, envelope, indexes);
      const role = channelRoleName(channel);
      const existing = state.roles.get(role)?.signed.targets ?? {};
      const plan = planRelease(channel, existing, custom, targets, opts.force);
      const prepared = await prepareTrees(b.manifest, opts.trees ?? {});
      // Chunks and objects before targets before metadata: nothing signed names a missing file.
      const chunks = await copyChunks(b, new ChunkStore(dir));
      const trees: TreePublishResult[] = [];
      for (const t of prepared) {
        trees.push(await storeTree(dir, t));
        const bases = await treeDeltaBases(state, compatible, t.image);
        await storeTreeDeltas(dir, { digest: t.digest, bytes: t.bytes }, bases);
      }
      for (const f of files) await storeTargetFile(dir, f.target, f.bytes);
      if (plan === 'add') {
        const map = await withChannelIndex(dir, channel, compatible, {
          ...existing,
          ...Object.fromEntries(targets.map((t) => [t.path, t])),
        });
        const delegations = state.roles.has(role)
          ? undefined
          : withChannel(state.targets.signed, state.root.signed, channel);
        await commit(
          state,
          { roles: new Map([[role, map]]), delegations },
          opts.keys,
          opts.now ?? new Date(),
        );
      }
      return {
        channel,
        ...custom,
        published: plan === 'add',
        targets: targets.map((t) => t.path),
        chunks,
        trees,
      };
    });
  } finally {
    await source.close();
  }
}
