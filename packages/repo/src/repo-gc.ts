/**
 * Garbage collection of the shared chunk store: a chunk stays while any chunk index that any
 * channel's current targets metadata names references it; everything else (chunks of an
 * interrupted publish, of removed releases, strays) is deleted. Runs under the repository lock,
 * so it never races a publish that has copied chunks but not yet signed its targets. Delta packs
 * whose target index no release names are deleted too, and so are tree listings no release's
 * manifest signs and file objects no kept listing names.
 */
import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ChunkStore, parseChunkIndex } from '@ferry/core';
import { loadRepo, withRepoLock, type RepoState } from './repo-state.ts';
import { listReleases } from './release.ts';
import { pruneDeltaPacks, type DeltaGcResult } from './repo-delta.ts';
import { readTargetFile } from './target-file.ts';
import { TREES_DIR, objectFile, treeFile } from './repo-layout.ts';
import { listObjects, readStoredTree, releaseTreeDigests } from './repo-tree.ts';

/** What gc found and removed. */
export interface GcResult {
  /** Chunks kept because a published chunk index references them. */
  kept: number;
  deleted: number;
  /** Bytes of the deleted chunk files (compressed). */
  deletedBytes: number;
  /** Delta packs kept (their target index is published) and deleted (docs/repository.md). */
  deltaPacks: DeltaGcResult;
  /** Tree listings kept (a release signs them) and deleted. */
  trees: { kept: number; deleted: number };
  /** File objects kept (a kept listing names them), deleted, and the deleted files' bytes. */
  objects: { kept: number; deleted: number; deletedBytes: number };
}

/** Options of gc. */
export interface GcOptions {
  /** Count what would be deleted without deleting it. */
  dryRun?: boolean;
}

/**
 * Every chunk id referenced by a chunk index target of any channel. Each index is read back
 * from its target file and must match its signed hash (REPO_TARGET_MISMATCH otherwise): a
 * damaged index must stop gc, not make it delete the chunks the index should protect.
 */
export async function referencedChunks(state: RepoState): Promise<Set<string>> {
  const ids = new Set<string>();
  const seen = new Set<string>();
  for (const release of listReleases(state)) {
    const role = state.roles.get(`channel-${release.channel}`)!.signed;
    for (const path of Object.values(release.chunkIndexes)) {
      const t = role.targets[path]!;
      // Promoted releases share index bytes: read each distinct index once.
      if (seen.has(t.hashes.sha256!)) continue;
      seen.add(t.hashes.sha256!);
      const bytes = await readTargetFile(state.dir, t);
      for (const c of parseChunkIndex(bytes).chunks) ids.add(c.id);
    }
  }
  return ids;
}

/**
 * Deletes every chunk no published chunk index references.
 *
 * @example
 * const { deleted, deletedBytes } = await gc('/srv/ferry');
 */
export async function gc(dir: string, opts: GcOptions = {}): Promise<GcResult> {
  return withRepoLock(dir, async () => {
    const state = await loadRepo(dir);
    const keep = await referencedChunks(state);
    const store = new ChunkStore(dir);
    const result = { kept: 0, deleted: 0, deletedBytes: 0 };
    for await (const id of store.list()) {
      if (keep.has(id)) {
        result.kept++;
        continue;
      }
      result.deletedBytes += (await stat(store.pathOf(id)).catch(() => ({ size: 0 }))).size;
      result.deleted++;
      if (!opts.dryRun) await store.delete(id);
    }
    const deltaPacks = await pruneDeltaPacks(state, opts.dryRun);
    return { ...result, deltaPacks, ...(await pruneTrees(state, opts.dryRun)) };
  });
}

/** Deletes listings no release signs, then objects no remaining listing names. */
async function pruneTrees(state: RepoState, dryRun = false) {
  const digests = await releaseTreeDigests(state);
  const keep = new Set<string>();
  for (const d of digests) {
    // A damaged listing throws (REPO_OBJECT_CORRUPT): it must stop gc, not free its objects.
    const listing = await readStoredTree(state.dir, d);
    for (const e of listing?.entries ?? []) if (e.type === 'file') keep.add(e.object!);
  }
  const trees = { kept: 0, deleted: 0 };
  const names = await readdir(join(state.dir, TREES_DIR)).catch(() => [] as string[]);
  for (const name of names) {
    const delta = /^([0-9a-f]{64})\.from-([0-9a-f]{64})\.zst$/.exec(name);
    if (delta) {
      // A listing delta goes with the first of its two listings that goes.
      if (!digests.has(delta[1]!) || !digests.has(delta[2]!)) {
        trees.deleted++;
        if (!dryRun) await rm(join(state.dir, TREES_DIR, name), { force: true });
      }
      continue;
    }
    const d = /^([0-9a-f]{64})\.tree\.zst$/.exec(name)?.[1];
    if (d === undefined) continue;
    if (digests.has(d)) trees.kept++;
    else {
      trees.deleted++;
      if (!dryRun) await rm(treeFile(state.dir, d));
    }
  }
  const objects = { kept: 0, deleted: 0, deletedBytes: 0 };
  for await (const id of listObjects(state.dir)) {
    if (keep.has(id)) {
      objects.kept++;
      continue;
    }
    const path = objectFile(state.dir, id);
    objects.deletedBytes += (await stat(path).catch(() => ({ size: 0 }))).size;
    objects.deleted++;
    if (!dryRun) await rm(path, { force: true });
  }
  return { trees, objects };
}
