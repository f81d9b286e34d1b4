/**
 * Saved groups (named device filters) and how a rollout to a group is resolved: the group's
 * filter is merged with the request's own filter and stored in the rollout, so a rollout's
 * target set never changes when a group is edited or deleted later.
 */
import type { Kysely } from 'kysely';
import type { z } from 'zod';
import { FerryError } from '@ferry/core';
import type {
  DeviceFilter,
  GroupView,
  RolloutCreate,
  RolloutRequest,
  groupCreateSchema,
} from '@ferry/protocol';
import type { FleetDb } from './db-schema.ts';

type GroupCreate = z.infer<typeof groupCreateSchema>;

/** Saves a group; SERVER_CONFLICT if the name is taken. */
export async function createGroup(
  db: Kysely<FleetDb>,
  body: GroupCreate,
  now: number,
): Promise<GroupView> {
  const r = await db
    .insertInto('device_groups')
    .values({ name: body.name, filter: JSON.stringify(body.filter), created_at: now })
    .onConflict((oc) => oc.column('name').doNothing())
    .returning('name')
    .executeTakeFirst();
  if (!r) throw new FerryError('SERVER_CONFLICT', `group ${body.name} exists`);
  return { name: body.name, filter: body.filter, createdAt: now };
}

/** Every group, by name. */
export async function listGroups(db: Kysely<FleetDb>): Promise<GroupView[]> {
  const rows = await db.selectFrom('device_groups').selectAll().orderBy('name').execute();
  return rows.map((g) => ({
    name: g.name,
    filter: JSON.parse(g.filter) as DeviceFilter,
    createdAt: Number(g.created_at),
  }));
}

/** Deletes a group (rollouts made from it keep their filter); SERVER_NOT_FOUND if none. */
export async function deleteGroup(db: Kysely<FleetDb>, name: string): Promise<void> {
  const r = await db.deleteFrom('device_groups').where('name', '=', name).executeTakeFirst();
  if (Number(r.numDeletedRows) === 0) throw new FerryError('SERVER_NOT_FOUND', `no group ${name}`);
}

const SCALARS = ['compatible', 'channel', 'status', 'release', 'search'] as const;

/**
 * Both filters at once (AND): tags and attributes are joined, a scalar set in both must be
 * equal. SERVER_BAD_REQUEST when they disagree, since such a rollout could select no device.
 * @example
 * mergeFilters({ tags: ['lab'] }, { tags: ['eu'], channel: 'beta' }); // { tags: ['eu', 'lab'], channel: 'beta' }
 */
export function mergeFilters(a: DeviceFilter, b: DeviceFilter): DeviceFilter {
  const out: DeviceFilter = { ...a };
  for (const k of SCALARS) {
    const v = b[k];
    if (v === undefined) continue;
    if (a[k] !== undefined && a[k] !== v)
      throw new FerryError(
        'SERVER_BAD_REQUEST',
        `filter.${k}: the group says ${a[k]}, the request ${v}`,
      );
    (out as Record<string, unknown>)[k] = v;
  }
  if (a.tags || b.tags) out.tags = [...new Set([...(a.tags ?? []), ...(b.tags ?? [])])].sort();
  if (a.attributes || b.attributes) {
    const attrs = { ...a.attributes };
    for (const [k, v] of Object.entries(b.attributes ?? {})) {
      if (attrs[k] !== undefined && attrs[k] !== v)
        throw new FerryError(
          'SERVER_BAD_REQUEST',
          `filter.attributes.${k}: the group and the request disagree`,
        );
      attrs[k] = v;
    }
    out.attributes = attrs;
  }
  return out;
}

/**
 * The rollout to create for a request: without `group` the request itself; with one, its
 * filter merged with the group's. SERVER_NOT_FOUND for an unknown group, SERVER_BAD_REQUEST
 * when the group names another channel than the rollout.
 */
export async function resolveRolloutRequest(
  db: Kysely<FleetDb>,
  req: RolloutRequest,
): Promise<RolloutCreate> {
  const { group, ...body } = req;
  if (group === undefined) return body;
  const row = await db
    .selectFrom('device_groups')
    .select('filter')
    .where('name', '=', group)
    .executeTakeFirst();
  if (!row) throw new FerryError('SERVER_NOT_FOUND', `no group ${group}`);
  const filter = mergeFilters(JSON.parse(row.filter) as DeviceFilter, body.filter);
  if (filter.channel !== undefined && filter.channel !== body.channel)
    throw new FerryError(
      'SERVER_BAD_REQUEST',
      `group ${group} selects channel ${filter.channel}, the rollout is in ${body.channel}`,
    );
  return { ...body, filter };
}
