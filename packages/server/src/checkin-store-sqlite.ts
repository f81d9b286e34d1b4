/**
 * The check-in hot path on SQLite: prepared statements on the shared connection, run
 * synchronously inside one transaction per request (one WAL commit instead of three).
 */
import type { DeviceStatus } from '@ferry/protocol';
import type { DeviceTable } from './db-schema.ts';
import type { SqliteHandle } from './database-sqlite.ts';
import type {
  CheckinOutcome,
  CheckinStore,
  InventoryColumns,
  NonceSpend,
  OpenRollout,
  SpendOutcome,
} from './checkin-store.ts';

const SQL = {
  begin: 'BEGIN IMMEDIATE',
  commit: 'COMMIT',
  rollback: 'ROLLBACK',
  key: 'SELECT public_key FROM devices WHERE id = ?',
  status: 'SELECT status FROM devices WHERE id = ?',
  nonce:
    'INSERT INTO request_nonces (device_id, nonce, expires_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING',
  update:
    'UPDATE devices SET compatible = ?, hardware_id = ?, agent_version = ?, booted_slot = ?, ' +
    'release = ?, release_counter = ?, slots = ?, attributes = ?, last_seen = ? WHERE id = ? RETURNING *',
  open: 'SELECT rollout_id, state FROM rollout_devices WHERE device_id = ? AND final = 0',
};

/** Runs `fn` in a transaction; `fn` returning `commit: false` rolls it back. */
function tx<T>(h: SqliteHandle, fn: () => { commit: boolean; value: T }): T {
  h.prepare(SQL.begin).run();
  let r: { commit: boolean; value: T };
  try {
    r = fn();
  } catch (e) {
    h.prepare(SQL.rollback).run();
    throw e;
  }
  h.prepare(r.commit ? SQL.commit : SQL.rollback).run();
  return r.value;
}

/** The SQLite CheckinStore over the shared handle. */
export function sqliteCheckinStore(h: SqliteHandle): CheckinStore {
  const spendNonce = (n: NonceSpend) =>
    Number(h.prepare(SQL.nonce).run(n.deviceId, n.nonce, n.expiresAt).changes) === 1;
  return {
    async publicKey(deviceId) {
      const row = await h.exclusive((x) => x.prepare(SQL.key).get(deviceId));
      return row ? String(row.public_key) : undefined;
    },

    checkin(n: NonceSpend, inv: InventoryColumns, now: number, withOpen: boolean) {
      const run = (): CheckinOutcome =>
        tx<CheckinOutcome>(h, () => {
          if (!spendNonce(n)) return { commit: false, value: { kind: 'replay' } };
          const device = h
            .prepare(SQL.update)
            .get(
              inv.compatible,
              inv.hardware_id,
              inv.agent_version,
              inv.booted_slot,
              inv.release,
              inv.release_counter,
              inv.slots,
              inv.attributes,
              now,
              n.deviceId,
            ) as DeviceTable | undefined;
          if (!device) return { commit: false, value: { kind: 'unknown' } };
          const open = withOpen
            ? (h.prepare(SQL.open).all(n.deviceId) as unknown as OpenRollout[])
            : [];
          return { commit: true, value: { kind: 'recorded', device, open } };
        });
      return Promise.resolve(h.exclusive(run));
    },

    spend(n: NonceSpend) {
      const run = (): SpendOutcome =>
        tx<SpendOutcome>(h, () => {
          const row = h.prepare(SQL.status).get(n.deviceId);
          if (!row) return { commit: false, value: { kind: 'unknown' } };
          if (!spendNonce(n)) return { commit: false, value: { kind: 'replay' } };
          return { commit: true, value: { kind: 'spent', status: row.status as DeviceStatus } };
        });
      return Promise.resolve(h.exclusive(run));
    },
  };
}
