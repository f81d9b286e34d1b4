/**
 * The check-in hot path on SQLite: prepared statements on the shared connection, run
 * synchronously. Group commit: the check-ins and nonce spends that arrive in one turn of the
 * event loop run in one transaction, each inside its own savepoint, so one WAL commit serves
 * them all, and a refused or failed one rolls back only its own statements. No answer leaves
 * before the commit that holds its writes.
 */
import type { DeviceStatus } from '@ferry/protocol';
import type { DeviceTable } from './db-schema.ts';
import type { SqliteHandle } from './database-sqlite.ts';
import {
  INVENTORY_COLUMNS,
  inventoryValues,
  type CheckinOutcome,
  type CheckinStore,
  type InventoryColumns,
  type NonceSpend,
  type OpenRollout,
  type SpendOutcome,
} from './checkin-store.ts';

const SQL = {
  begin: 'BEGIN IMMEDIATE',
  commit: 'COMMIT',
  rollback: 'ROLLBACK',
  savepoint: 'SAVEPOINT checkin',
  rollbackTo: 'ROLLBACK TO checkin',
  release: 'RELEASE checkin',
  key: 'SELECT public_key FROM devices WHERE id = ?',
  status: 'SELECT status FROM devices WHERE id = ?',
  nonce:
    'INSERT INTO request_nonces (device_id, nonce, expires_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING',
  update: `UPDATE devices SET ${INVENTORY_COLUMNS.map((c) => `${c} = ?`).join(', ')}, last_seen = ? WHERE id = ? RETURNING *`,
  open: 'SELECT rollout_id, state FROM rollout_devices WHERE device_id = ? AND final = 0',
};

/** One unit of work: its statements, and whether to keep what they wrote. */
type Work<T> = () => { commit: boolean; value: T };

interface Job {
  fn: Work<unknown>;
  resolve(v: unknown): void;
  reject(e: unknown): void;
}

/** Most jobs in one transaction (a bound on the latency one commit adds to the first). */
export const GROUP_COMMIT_MAX = 256;

/**
 * Runs jobs submitted during one turn of the event loop together, at setImmediate, in one
 * `BEGIN IMMEDIATE` ... `COMMIT` with a savepoint per job.
 */
class GroupCommit {
  readonly #h: SqliteHandle;
  #queue: Job[] = [];
  #scheduled = false;
  /** Transactions and jobs committed (tests read them). */
  transactions = 0;
  jobs = 0;

  constructor(h: SqliteHandle) {
    this.#h = h;
  }

  run<T>(fn: Work<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({ fn, resolve: resolve, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => this.#flush());
      }
    });
  }

  #flush(): void {
    this.#scheduled = false;
    const jobs = this.#queue.splice(0, GROUP_COMMIT_MAX);
    if (this.#queue.length > 0) {
      this.#scheduled = true;
      setImmediate(() => this.#flush());
    }
    const settle = this.#h.exclusive(() => this.#transaction(jobs));
    if (settle instanceof Promise) settle.catch((e: unknown) => jobs.forEach((j) => j.reject(e)));
  }

  #transaction(jobs: Job[]): void {
    const h = this.#h;
    const out: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = [];
    try {
      h.prepare(SQL.begin).run();
      for (const j of jobs) {
        h.prepare(SQL.savepoint).run();
        try {
          const r = j.fn();
          if (!r.commit) h.prepare(SQL.rollbackTo).run();
          out.push({ ok: true, value: r.value });
        } catch (error) {
          h.prepare(SQL.rollbackTo).run();
          out.push({ ok: false, error });
        }
        h.prepare(SQL.release).run();
      }
      h.prepare(SQL.commit).run();
    } catch (e) {
      // BEGIN, a savepoint statement or COMMIT failed: nothing of the group is kept.
      try {
        if (h.db.isTransaction) h.prepare(SQL.rollback).run();
      } catch {
        // the connection reports the failure to the next user
      }
      for (const j of jobs) j.reject(e);
      return;
    }
    this.transactions++;
    this.jobs += jobs.length;
    jobs.forEach((j, i) => {
      const r = out[i]!;
      if (r.ok) j.resolve(r.value);
      else j.reject(r.error);
    });
  }
}

/** The SQLite CheckinStore over the shared handle. */
export function sqliteCheckinStore(h: SqliteHandle): CheckinStore & { group: GroupCommit } {
  const group = new GroupCommit(h);
  const spendNonce = (n: NonceSpend) =>
    Number(h.prepare(SQL.nonce).run(n.deviceId, n.nonce, n.expiresAt).changes) === 1;
  return {
    group,
    async publicKey(deviceId) {
      const row = await h.exclusive((x) => x.prepare(SQL.key).get(deviceId));
      return row ? String(row.public_key) : undefined;
    },

    checkin(n: NonceSpend, inv: InventoryColumns, now: number, withOpen: boolean) {
      return group.run<CheckinOutcome>(() => {
        if (!spendNonce(n)) return { commit: false, value: { kind: 'replay' } };
        const device = h.prepare(SQL.update).get(...inventoryValues(inv), now, n.deviceId) as
          DeviceTable | undefined;
        if (!device) return { commit: false, value: { kind: 'unknown' } };
        const open = withOpen
          ? (h.prepare(SQL.open).all(n.deviceId) as unknown as OpenRollout[])
          : [];
        return { commit: true, value: { kind: 'recorded', device, open } };
      });
    },

    spend(n: NonceSpend) {
      return group.run<SpendOutcome>(() => {
        const row = h.prepare(SQL.status).get(n.deviceId);
        if (!row) return { commit: false, value: { kind: 'unknown' } };
        if (!spendNonce(n)) return { commit: false, value: { kind: 'replay' } };
        return { commit: true, value: { kind: 'spent', status: row.status as DeviceStatus } };
      });
    },
  };
}
