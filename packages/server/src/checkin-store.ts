/**
 * The check-in hot path's storage, behind one small interface with one implementation per
 * database (checkin-store-sqlite.ts, checkin-store-postgres.ts): a few fixed statements,
 * prepared once and run without the query builder, each request in one transaction (SQLite)
 * or one round trip (PostgreSQL). Everything else goes through Kysely.
 */
import type { DeviceStatus } from '@ferry/protocol';
import type { DeviceTable } from './db-schema.ts';

/** A request nonce to store; stored until `expiresAt`, when the skew window refuses it anyway. */
export interface NonceSpend {
  deviceId: string;
  nonce: string;
  expiresAt: number;
}

/** The device columns a check-in writes (devices.ts `inventoryColumns`). */
export interface InventoryColumns {
  compatible: string;
  hardware_id: string | null;
  agent_version: string | null;
  booted_slot: string | null;
  release: string | null;
  release_counter: number | null;
  slots: string;
  attributes: string;
}

/** The inventory columns in the order both stores bind them: one list for SQL and values. */
export const INVENTORY_COLUMNS = [
  'compatible',
  'hardware_id',
  'agent_version',
  'booted_slot',
  'release',
  'release_counter',
  'slots',
  'attributes',
] as const satisfies ReadonlyArray<keyof InventoryColumns>;

/** `inv`'s values in `INVENTORY_COLUMNS` order, to bind after the SET list that names them. */
export function inventoryValues(inv: InventoryColumns): Array<string | number | null> {
  return INVENTORY_COLUMNS.map((c) => inv[c]);
}

/** A rollout the device has not finished. */
export interface OpenRollout {
  rollout_id: string;
  state: string;
}

/** What a check-in found: a replayed nonce or an unknown device change nothing. */
export type CheckinOutcome =
  | { kind: 'replay' }
  | { kind: 'unknown' }
  | { kind: 'recorded'; device: DeviceTable; open: OpenRollout[] };

/** What spending a nonce found. */
export type SpendOutcome =
  { kind: 'replay' } | { kind: 'unknown' } | { kind: 'spent'; status: DeviceStatus };

/** The hot path's statements. */
export interface CheckinStore {
  /** The enrolled public key (hex) of a device, or undefined. */
  publicKey(deviceId: string): Promise<string | undefined>;
  /**
   * One transaction: spends the nonce, records the inventory and the time, and (if `withOpen`)
   * reads the device's open rollouts. Authorisation facts (exists, status) come from this
   * transaction, never from a cache.
   */
  checkin(
    n: NonceSpend,
    inv: InventoryColumns,
    now: number,
    withOpen: boolean,
  ): Promise<CheckinOutcome>;
  /** One transaction: spends the nonce of an enrolled device and reads its status. */
  spend(n: NonceSpend): Promise<SpendOutcome>;
}
