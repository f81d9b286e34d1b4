/**
 * Releases in the fleet database, imported from the signed repository (repository.ts). Import
 * adds what is new and never changes a release already known: a repository that later
 * signs different bytes for the same compatible and version is refused (SERVER_REPOSITORY).
 */
import type { Kysely } from 'kysely';
import { FerryError } from '@ferry/core';
import type { ReleaseView } from '@ferry/protocol';
import type { FleetDb } from './db-schema.ts';
import type { RepositoryRelease } from './repository.ts';

/** Stores `releases`; returns how many release/channel pairs were new. */
export async function importReleases(
  db: Kysely<FleetDb>,
  releases: RepositoryRelease[],
  now: number,
): Promise<{ added: number; total: number }> {
  let added = 0;
  await db.transaction().execute(async (tx) => {
    for (const r of releases) {
      const id = `${r.compatible}@${r.version}`;
      const known = await tx
        .selectFrom('releases')
        .selectAll()
        .where('id', '=', id)
        .executeTakeFirst();
      if (
        known &&
        (known.manifest_sha256 !== r.manifestSha256 || known.release_counter !== r.releaseCounter)
      )
        throw new FerryError('SERVER_REPOSITORY', `${id} differs from the release imported before`);
      if (!known)
        await tx
          .insertInto('releases')
          .values({
            id,
            compatible: r.compatible,
            version: r.version,
            release_counter: r.releaseCounter,
            manifest_sha256: r.manifestSha256,
            manifest_length: r.manifestLength,
            imported_at: now,
          })
          .execute();
      const ins = await tx
        .insertInto('channel_releases')
        .values({ channel: r.channel, release_id: id, manifest_path: r.manifestPath })
        .onConflict((oc) => oc.columns(['channel', 'release_id']).doNothing())
        .returning('channel')
        .executeTakeFirst();
      if (ins) added++;
    }
  });
  return { added, total: releases.length };
}

/** Every release with its channels, newest counter first. */
export async function listReleases(db: Kysely<FleetDb>): Promise<ReleaseView[]> {
  const rows = await db
    .selectFrom('releases')
    .innerJoin('channel_releases', 'channel_releases.release_id', 'releases.id')
    .selectAll()
    .orderBy('release_counter', 'desc')
    .orderBy('channel')
    .execute();
  const byId = new Map<string, ReleaseView>();
  for (const r of rows) {
    let v = byId.get(r.id);
    if (!v)
      byId.set(
        r.id,
        (v = {
          compatible: r.compatible,
          version: r.version,
          releaseCounter: r.release_counter,
          manifestSha256: r.manifest_sha256,
          manifestLength: r.manifest_length,
          channels: [],
          importedAt: r.imported_at,
        }),
      );
    v.channels.push({ channel: r.channel, manifestPath: r.manifest_path });
  }
  return [...byId.values()];
}
