/**
 * The check-in hot path on PostgreSQL: named prepared statements on the shared pool, each
 * request one statement (data-modifying CTEs), so one round trip and one implicit transaction.
 * The nonce is inserted only for an enrolled device, and the device row only updated when the
 * nonce was new: a replay or an unknown device writes nothing.
 */
import type pg from 'pg';
import type { DeviceStatus } from '@ferry/protocol';
import type { DeviceTable } from './db-schema.ts';
import {
  INVENTORY_COLUMNS,
  inventoryValues,
  type CheckinStore,
  type InventoryColumns,
  type NonceSpend,
  type OpenRollout,
} from './checkin-store.ts';

const NONCE = `n AS (
  INSERT INTO request_nonces (device_id, nonce, expires_at)
  SELECT $1::text, $2::text, $3::bigint WHERE EXISTS (SELECT 1 FROM devices WHERE id = $1)
  ON CONFLICT DO NOTHING RETURNING 1)`;

const CHECKIN = `WITH ${NONCE}, d AS (
  UPDATE devices SET ${INVENTORY_COLUMNS.map((c, i) => `${c} = $${i + 4}`).join(', ')},
    last_seen = $${INVENTORY_COLUMNS.length + 4}
  WHERE id = $1 AND EXISTS (SELECT 1 FROM n) RETURNING *)
SELECT EXISTS (SELECT 1 FROM devices WHERE id = $1) AS known, d.*,
  CASE WHEN $${INVENTORY_COLUMNS.length + 5}::boolean THEN (
    SELECT coalesce(json_agg(json_build_object('rollout_id', rollout_id, 'state', state)), '[]')
    FROM rollout_devices WHERE device_id = $1 AND final = 0) END AS open
FROM (SELECT 1) one LEFT JOIN d ON true`;

const SPEND = `WITH ${NONCE}
SELECT (SELECT count(*) FROM n)::int AS fresh, (SELECT status FROM devices WHERE id = $1) AS status`;

type CheckinRow = DeviceTable & { known: boolean; open: OpenRollout[] | null };

/** The PostgreSQL CheckinStore over `pool` (the pool Kysely uses). */
export function postgresCheckinStore(pool: pg.Pool): CheckinStore {
  return {
    async publicKey(deviceId) {
      const r = await pool.query<{ public_key: string }>({
        name: 'ferry_device_key',
        text: 'SELECT public_key FROM devices WHERE id = $1',
        values: [deviceId],
      });
      return r.rows[0]?.public_key;
    },

    async checkin(n: NonceSpend, inv: InventoryColumns, now: number, withOpen: boolean) {
      const r = await pool.query<CheckinRow>({
        name: 'ferry_checkin',
        text: CHECKIN,
        values: [n.deviceId, n.nonce, n.expiresAt, ...inventoryValues(inv), now, withOpen],
      });
      const row = r.rows[0];
      if (!row?.known) return { kind: 'unknown' };
      if (row.id === null) return { kind: 'replay' };
      const { known: _k, open, ...device } = row;
      return { kind: 'recorded', device, open: open ?? [] };
    },

    async spend(n: NonceSpend) {
      const r = await pool.query<{ fresh: number; status: DeviceStatus | null }>({
        name: 'ferry_spend_nonce',
        text: SPEND,
        values: [n.deviceId, n.nonce, n.expiresAt],
      });
      const row = r.rows[0];
      if (!row?.status) return { kind: 'unknown' };
      if (row.fresh !== 1) return { kind: 'replay' };
      return { kind: 'spent', status: row.status };
    },
  };
}
