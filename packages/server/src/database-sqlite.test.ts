/**
 * The shared SQLite connection: the hot path's statements wait while Kysely holds the
 * connection in a transaction, so they never become part of (or roll back with) it.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase } from './database.ts';
import { inventoryColumns } from './devices.ts';
import { inventory } from './test-harness.ts';

const dir = mkdtempSync(join(tmpdir(), 'ferry-sqlite-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** An accepted device row with the test inventory. */
const deviceRow = (id: string, publicKey: string) => ({
  id,
  public_key: publicKey,
  status: 'accepted' as const,
  ...inventoryColumns(inventory()),
  tags: '[]',
  channel: 'stable',
  bucket: 1,
  last_seen: 0,
  created_at: 0,
});

describe('SqliteHandle', () => {
  describe('when a Kysely transaction is open and rolls back', () => {
    it('runs the hot path only after it ends, outside it', async () => {
      const database = await openDatabase(join(dir, 'a.db'));
      try {
        const n = { deviceId: 'd'.repeat(32), nonce: 'n'.repeat(22), expiresAt: Date.now() };
        const order: string[] = [];
        let checkin: Promise<unknown> | undefined;
        await database.db
          .transaction()
          .execute(async (tx) => {
            await tx.selectFrom('devices').select('id').execute();
            checkin = database.checkins.spend(n).then((r) => order.push(`spend:${r.kind}`));
            await new Promise((res) => setTimeout(res, 20));
            order.push('tx-end');
            throw new Error('roll back');
          })
          .catch(() => undefined);
        await checkin;
        // The device is unknown, so spend stores nothing; it ran after the transaction.
        assert.deepEqual(order, ['tx-end', 'spend:unknown']);
        await database.db.insertInto('devices').values(deviceRow(n.deviceId, 'k')).execute();
        const first = await database.checkins.checkin(n, inventoryColumns(inventory()), 1, true);
        assert.equal(first.kind, 'recorded');
        const again = await database.checkins.checkin(n, inventoryColumns(inventory()), 2, true);
        assert.equal(again.kind, 'replay');
      } finally {
        await database.close();
      }
    });
  });

  describe('when many check-ins arrive in one turn of the event loop', () => {
    it('commits them in one transaction, and a replay, an unknown device or a failure only rolls back itself', async () => {
      const database = await openDatabase(join(dir, 'group.db'));
      try {
        const device = (i: number) => deviceRow(String(i).padStart(32, '0'), `k${i}`);
        await database.db.insertInto('devices').values([1, 2, 3, 4].map(device)).execute();
        const store = database.checkins as typeof database.checkins & {
          group: { transactions: number; jobs: number };
        };
        const t0 = store.group.transactions;
        const inv = inventoryColumns(inventory());
        const spend = (i: number, nonce: string) => ({
          deviceId: String(i).padStart(32, '0'),
          nonce,
          expiresAt: Date.now() + 60_000,
        });
        const bad = { ...inv, slots: null as unknown as string }; // NOT NULL: the update fails
        const results = await Promise.allSettled([
          store.checkin(spend(1, 'a'.repeat(22)), inv, 101, false),
          store.checkin(spend(1, 'a'.repeat(22)), inv, 102, false), // same nonce: a replay
          store.checkin(spend(9, 'b'.repeat(22)), inv, 103, false), // unknown device
          store.checkin(spend(3, 'c'.repeat(22)), bad, 104, false),
          store.checkin(spend(4, 'd'.repeat(22)), inv, 105, false),
        ]);
        assert.equal(store.group.transactions, t0 + 1);
        const kinds = results.map((r) => (r.status === 'fulfilled' ? r.value.kind : 'error'));
        assert.deepEqual(kinds, ['recorded', 'replay', 'unknown', 'error', 'recorded']);
        const seen = await database.db
          .selectFrom('devices')
          .select(['id', 'last_seen'])
          .orderBy('id')
          .execute();
        assert.deepEqual(
          seen.map((r) => Number(r.last_seen)),
          [101, 0, 0, 105],
        );
        const nonces = await database.db
          .selectFrom('request_nonces')
          .select('nonce')
          .orderBy('nonce')
          .execute();
        // The failed check-in's nonce went with its savepoint; the unknown device's too.
        assert.deepEqual(
          nonces.map((r) => r.nonce),
          ['a'.repeat(22), 'd'.repeat(22)],
        );
      } finally {
        await database.close();
      }
    });
  });

  describe('when commits fill the WAL', () => {
    it('copies them into the database file from the checkpoint thread, not from the commits', async () => {
      const file = join(dir, 'wal.db');
      const database = await openDatabase(file);
      try {
        const before = statSync(file).size;
        const big = 'x'.repeat(4000);
        for (let i = 0; i < 300; i++)
          await database.db
            .insertInto('audit_log')
            .values({ at: i, username: 'a', action: 'test', target: big, detail: '{}' })
            .execute();
        // Commits alone never checkpoint (wal_autocheckpoint = 0); the worker does, within
        // a few of its 200 ms rounds.
        const deadline = Date.now() + 5000;
        while (statSync(file).size < before + 300 * 4000 && Date.now() < deadline)
          await new Promise((res) => setTimeout(res, 100));
        assert.ok(statSync(file).size >= before + 300 * 4000, `db file is ${statSync(file).size}`);
      } finally {
        await database.close();
      }
    });
  });
});
