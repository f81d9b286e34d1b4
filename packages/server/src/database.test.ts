import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase, parseDatabaseUrl } from './database.ts';

describe('parseDatabaseUrl', () => {
  it('takes postgres URLs for PostgreSQL and paths for SQLite', () => {
    assert.equal(parseDatabaseUrl('postgres://u@h/db').dialect, 'postgres');
    assert.equal(parseDatabaseUrl('postgresql://u@h/db').dialect, 'postgres');
    assert.deepEqual(parseDatabaseUrl('sqlite:/var/lib/ferry.db'), {
      dialect: 'sqlite',
      target: '/var/lib/ferry.db',
    });
    assert.deepEqual(parseDatabaseUrl('ferry.db'), { dialect: 'sqlite', target: 'ferry.db' });
  });
  describe('when the URL names another engine', () => {
    it('throws SERVER_CONFIG', () => {
      assert.throws(() => parseDatabaseUrl('mysql://h/db'), { code: 'SERVER_CONFIG' });
      assert.throws(() => parseDatabaseUrl('sqlite:'), { code: 'SERVER_CONFIG' });
    });
  });
});

describe('openDatabase', () => {
  describe('when opened twice', () => {
    it('migrates once and keeps the data', async () => {
      const path = join(mkdtempSync(join(tmpdir(), 'ferry-db-')), 'f.db');
      const a = await openDatabase(path);
      await a.db
        .insertInto('device_groups')
        .values({ name: 'g', filter: '{}', created_at: 1 })
        .execute();
      await a.close();
      const b = await openDatabase(path);
      const rows = await b.db.selectFrom('device_groups').selectAll().execute();
      await b.close();
      assert.equal(rows.length, 1);
    });
  });
  describe('when PostgreSQL is unreachable', () => {
    it('throws SERVER_DATABASE', async () => {
      await assert.rejects(openDatabase('postgres://nobody@127.0.0.1:1/none'), {
        code: 'SERVER_DATABASE',
      });
    });
  });
});
