/**
 * The device registry: enrolment (token or admin approval), inventory at check-in, lists and
 * detail for the admin API. A device is known by the id derived from its ed25519 key.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import { FerryError } from '@ferry/core';
import type {
  DeviceDetail,
  DeviceFilter,
  DeviceStatus,
  DeviceSummary,
  EnrolRequest,
  Inventory,
  Page,
} from '@ferry/protocol';
import type { InventoryColumns } from './checkin-store.ts';
import type { DeviceTable, FleetDb } from './db-schema.ts';
import { whereFilter } from './device-filter.ts';

/** The device id of a raw ed25519 public key (hex): 32 hex digits of its SHA-256. */
export function deviceIdOf(publicKeyHex: string): string {
  return createHash('sha256').update(Buffer.from(publicKeyHex, 'hex')).digest('hex').slice(0, 32);
}

/** Which 0.01 % slice of the fleet a device is in; rollouts add their own salt. */
export function bucketOf(deviceId: string): number {
  return parseInt(deviceId.slice(0, 8), 16) % 10000;
}

/** SHA-256 of an enrolment token (only the hash is stored). */
export function tokenHash(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/** A new random enrolment token. */
export function newToken(): string {
  return 'fet_' + randomBytes(24).toString('base64url');
}

/** The device columns an inventory sets. */
export function inventoryColumns(inv: Inventory): InventoryColumns {
  const booted = inv.slots.find((s) => s.name === inv.bootedSlot);
  return {
    compatible: inv.compatible,
    hardware_id: inv.hardwareId ?? null,
    agent_version: inv.agentVersion ?? null,
    booted_slot: inv.bootedSlot ?? null,
    release: booted?.version ?? null,
    release_counter: inv.releaseCounter ?? booted?.releaseCounter ?? null,
    slots: JSON.stringify(inv.slots),
    attributes: JSON.stringify(Object.fromEntries(Object.entries(inv.attributes).sort())),
  };
}

async function redeemToken(
  db: Kysely<FleetDb>,
  token: string,
  now: number,
): Promise<{ channel: string; tags: string }> {
  const hash = tokenHash(token);
  // Conditional decrement: two devices racing for the last use cannot both win.
  const r = await db
    .updateTable('enrolment_tokens')
    .set((eb) => ({ uses_left: eb('uses_left', '-', 1) }))
    .where('token_hash', '=', hash)
    .where('uses_left', '>', 0)
    .where('expires_at', '>', now)
    .executeTakeFirst();
  if (Number(r.numUpdatedRows) !== 1)
    throw new FerryError('DEVICE_ENROLMENT_REFUSED', 'enrolment token unknown, expired or used up');
  const t = await db
    .selectFrom('enrolment_tokens')
    .select(['channel', 'tags'])
    .where('token_hash', '=', hash)
    .executeTakeFirstOrThrow();
  return t;
}

/**
 * Enrols a device whose request signature the caller has verified with `req.publicKey`.
 * With a valid token it is accepted at once; without one it waits for an admin. Enrolling
 * again with the same key returns the current status and changes nothing.
 */
export async function enrolDevice(
  db: Kysely<FleetDb>,
  req: EnrolRequest,
  now: number,
): Promise<{ deviceId: string; status: DeviceStatus; created: boolean }> {
  const id = deviceIdOf(req.publicKey);
  const existing = await db
    .selectFrom('devices')
    .select('status')
    .where('id', '=', id)
    .executeTakeFirst();
  if (existing) return { deviceId: id, status: existing.status, created: false };
  const t = req.token !== undefined ? await redeemToken(db, req.token, now) : undefined;
  const status: DeviceStatus = t ? 'accepted' : 'pending';
  await db
    .insertInto('devices')
    .values({
      id,
      public_key: req.publicKey,
      status,
      ...inventoryColumns(req.inventory),
      tags: t?.tags ?? '[]',
      channel: t?.channel ?? 'stable',
      bucket: bucketOf(id),
      last_seen: now,
      created_at: now,
    })
    .onConflict((oc) => oc.doNothing())
    .execute();
  await addEvent(db, id, null, 'enrolled', null, t ? 'enrolment token' : 'awaiting approval', now);
  return { deviceId: id, status, created: true };
}

/** Appends to a device's timeline. */
export async function addEvent(
  db: Kysely<FleetDb>,
  deviceId: string,
  rolloutId: string | null,
  state: string,
  progress: number | null,
  detail: string | null,
  at: number,
): Promise<void> {
  await db
    .insertInto('device_events')
    .values({ device_id: deviceId, rollout_id: rolloutId, state, progress, detail, at })
    .execute();
}

/** The summary the API returns for a stored row. */
export function deviceSummary(d: DeviceTable): DeviceSummary {
  return {
    id: d.id,
    status: d.status,
    compatible: d.compatible,
    hardwareId: d.hardware_id,
    channel: d.channel,
    tags: JSON.parse(d.tags) as string[],
    release: d.release,
    releaseCounter: d.release_counter,
    bootedSlot: d.booted_slot,
    agentVersion: d.agent_version,
    lastSeen: d.last_seen,
    createdAt: d.created_at,
  };
}

/** One page of devices selected by `filter`, newest first. */
export async function listDevices(
  db: Kysely<FleetDb>,
  filter: DeviceFilter,
  limit: number,
  offset: number,
): Promise<Page<DeviceSummary>> {
  const rows = await db
    .selectFrom('devices')
    .selectAll()
    .where((eb) => whereFilter(eb, filter))
    .orderBy('created_at', 'desc')
    .orderBy('id')
    .limit(limit)
    .offset(offset)
    .execute();
  const { n } = await db
    .selectFrom('devices')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where((eb) => whereFilter(eb, filter))
    .executeTakeFirstOrThrow();
  return { items: rows.map(deviceSummary), total: Number(n) };
}

/** A device with its slots, attributes and the newest 200 events; SERVER_NOT_FOUND if none. */
export async function getDevice(db: Kysely<FleetDb>, id: string): Promise<DeviceDetail> {
  const d = await db.selectFrom('devices').selectAll().where('id', '=', id).executeTakeFirst();
  if (!d) throw new FerryError('SERVER_NOT_FOUND', `no device ${id}`);
  const events = await db
    .selectFrom('device_events')
    .selectAll()
    .where('device_id', '=', id)
    .orderBy('id', 'desc')
    .limit(200)
    .execute();
  return {
    ...deviceSummary(d),
    publicKey: d.public_key,
    slots: JSON.parse(d.slots) as DeviceDetail['slots'],
    attributes: JSON.parse(d.attributes) as Record<string, string>,
    events: events.map((e) => ({
      at: e.at,
      rolloutId: e.rollout_id,
      state: e.state as DeviceDetail['events'][number]['state'],
      progress: e.progress,
      detail: e.detail,
    })),
  };
}

/** Sets a device's approval status; SERVER_NOT_FOUND if none. */
export async function setDeviceStatus(
  db: Kysely<FleetDb>,
  id: string,
  status: DeviceStatus,
  now: number,
): Promise<void> {
  const r = await db.updateTable('devices').set({ status }).where('id', '=', id).executeTakeFirst();
  if (Number(r.numUpdatedRows) === 0) throw new FerryError('SERVER_NOT_FOUND', `no device ${id}`);
  await addEvent(db, id, null, status === 'accepted' ? 'approved' : status, null, null, now);
}

/** Changes a device's channel and/or tags; SERVER_NOT_FOUND if none. */
export async function patchDevice(
  db: Kysely<FleetDb>,
  id: string,
  patch: { channel?: string | undefined; tags?: string[] | undefined },
): Promise<void> {
  const set: Partial<DeviceTable> = {};
  if (patch.channel !== undefined) set.channel = patch.channel;
  if (patch.tags !== undefined) set.tags = JSON.stringify([...new Set(patch.tags)].sort());
  if (Object.keys(set).length === 0) return;
  const r = await db.updateTable('devices').set(set).where('id', '=', id).executeTakeFirst();
  if (Number(r.numUpdatedRows) === 0) throw new FerryError('SERVER_NOT_FOUND', `no device ${id}`);
}
