/**
 * The shared SQLite connection: the hot path's statements wait while Kysely holds the
 * connection in a transaction, so they never become part of (or roll back with) it.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase } from './database.ts';
import { inventoryColumns } from './devices.ts';
import { inventory } from './test-harness.ts';

const dir = mkdtempSync(join(tmpdir(), 'ferry-sqlite-'));
after(() => rmSync(dir, { recursive: true, force: true }));

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
        await database.db
          .insertInto('devices')
          .values({
            id: n.deviceId,
            public_key: 'k',
            status: 'accepted',
            ...inventoryColumns(inventory()),
            tags: '[]',
            channel: 'stable',
            bucket: 1,
            last_seen: 0,
            created_at: 0,
          })
          .execute();
        const first = await database.checkins.checkin(n, inventoryColumns(inventory()), 1, true);
        assert.equal(first.kind, 'recorded');
        const again = await database.checkins.checkin(n, inventoryColumns(inventory()), 2, true);
        assert.equal(again.kind, 'replay');
      } finally {
        await database.close();
      }
    });
  });
});
