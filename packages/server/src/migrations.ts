/**
 * Schema migrations, run at every start (`migrate`). One list for both databases; the only
 * difference is how an auto-increment key is spelled. A migration is never edited once
 * released: add a new one.
 */
import type { Kysely } from 'kysely';
import { Migrator, type Migration } from 'kysely/migration';
import { FerryError } from '@ferry/core';
import type { Dialect } from './database.ts';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyDb = Kysely<any>;

function serial(dialect: Dialect) {
  return dialect === 'postgres' ? ('bigserial' as const) : ('integer' as const);
}

async function initial(db: AnyDb, dialect: Dialect): Promise<void> {
  const text = 'text' as const;
  const big = 'bigint' as const;
  await db.schema
    .createTable('devices')
    .addColumn('id', text, (c) => c.primaryKey())
    .addColumn('public_key', text, (c) => c.notNull().unique())
    .addColumn('status', text, (c) => c.notNull())
    .addColumn('compatible', text, (c) => c.notNull())
    .addColumn('hardware_id', text)
    .addColumn('agent_version', text)
    .addColumn('booted_slot', text)
    .addColumn('release', text)
    .addColumn('release_counter', big)
    .addColumn('slots', text, (c) => c.notNull())
    .addColumn('attributes', text, (c) => c.notNull())
    .addColumn('tags', text, (c) => c.notNull())
    .addColumn('channel', text, (c) => c.notNull())
    .addColumn('bucket', 'integer', (c) => c.notNull())
    .addColumn('last_seen', big)
    .addColumn('created_at', big, (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex('devices_target')
    .on('devices')
    .columns(['channel', 'compatible'])
    .execute();
  await db.schema
    .createTable('enrolment_tokens')
    .addColumn('token_hash', text, (c) => c.primaryKey())
    .addColumn('uses_left', 'integer', (c) => c.notNull())
    .addColumn('expires_at', big, (c) => c.notNull())
    .addColumn('channel', text, (c) => c.notNull())
    .addColumn('tags', text, (c) => c.notNull())
    .addColumn('created_by', text, (c) => c.notNull())
    .addColumn('created_at', big, (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('request_nonces')
    .addColumn('device_id', text, (c) => c.notNull())
    .addColumn('nonce', text, (c) => c.notNull())
    .addColumn('expires_at', big, (c) => c.notNull())
    .addPrimaryKeyConstraint('request_nonces_pk', ['device_id', 'nonce'])
    .execute();
  await db.schema
    .createIndex('request_nonces_expiry')
    .on('request_nonces')
    .column('expires_at')
    .execute();
  await db.schema
    .createTable('releases')
    .addColumn('id', text, (c) => c.primaryKey())
    .addColumn('compatible', text, (c) => c.notNull())
    .addColumn('version', text, (c) => c.notNull())
    .addColumn('release_counter', big, (c) => c.notNull())
    .addColumn('manifest_sha256', text, (c) => c.notNull())
    .addColumn('manifest_length', big, (c) => c.notNull())
    .addColumn('imported_at', big, (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('channel_releases')
    .addColumn('channel', text, (c) => c.notNull())
    .addColumn('release_id', text, (c) => c.notNull().references('releases.id'))
    .addColumn('manifest_path', text, (c) => c.notNull())
    .addPrimaryKeyConstraint('channel_releases_pk', ['channel', 'release_id'])
    .execute();
  await db.schema
    .createTable('device_groups')
    .addColumn('name', text, (c) => c.primaryKey())
    .addColumn('filter', text, (c) => c.notNull())
    .addColumn('created_at', big, (c) => c.notNull())
    .execute();
  await createRolloutTables(db, dialect);
  await createAdminTables(db, dialect);
}

async function createRolloutTables(db: AnyDb, dialect: Dialect): Promise<void> {
  const text = 'text' as const;
  const big = 'bigint' as const;
  await db.schema
    .createTable('rollouts')
    .addColumn('id', text, (c) => c.primaryKey())
    .addColumn('name', text, (c) => c.notNull())
    .addColumn('release_id', text, (c) => c.notNull().references('releases.id'))
    .addColumn('channel', text, (c) => c.notNull())
    .addColumn('filter', text, (c) => c.notNull())
    .addColumn('phases', text, (c) => c.notNull())
    .addColumn('phase', 'integer', (c) => c.notNull())
    .addColumn('state', text, (c) => c.notNull())
    .addColumn('pause_reason', text)
    .addColumn('success_threshold', 'real', (c) => c.notNull())
    .addColumn('failure_threshold', 'real', (c) => c.notNull())
    .addColumn('min_reports', 'integer', (c) => c.notNull())
    .addColumn('windows', text, (c) => c.notNull())
    .addColumn('salt', 'integer', (c) => c.notNull())
    .addColumn('ack_final', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('ack_bad', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('created_by', text, (c) => c.notNull())
    .addColumn('created_at', big, (c) => c.notNull())
    .addColumn('updated_at', big, (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('rollout_devices')
    .addColumn('rollout_id', text, (c) => c.notNull().references('rollouts.id'))
    .addColumn('device_id', text, (c) => c.notNull().references('devices.id'))
    .addColumn('state', text, (c) => c.notNull())
    .addColumn('progress', 'integer')
    .addColumn('final', 'integer', (c) => c.notNull())
    .addColumn('updated_at', big, (c) => c.notNull())
    .addPrimaryKeyConstraint('rollout_devices_pk', ['rollout_id', 'device_id'])
    .execute();
  await db.schema
    .createIndex('rollout_devices_device')
    .on('rollout_devices')
    .column('device_id')
    .execute();
  await db.schema
    .createTable('device_events')
    .addColumn('id', serial(dialect), (c) =>
      dialect === 'postgres' ? c.primaryKey() : c.primaryKey().autoIncrement(),
    )
    .addColumn('device_id', text, (c) => c.notNull())
    .addColumn('rollout_id', text)
    .addColumn('state', text, (c) => c.notNull())
    .addColumn('progress', 'integer')
    .addColumn('detail', text)
    .addColumn('at', big, (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex('device_events_device')
    .on('device_events')
    .columns(['device_id', 'id'])
    .execute();
}

async function createAdminTables(db: AnyDb, dialect: Dialect): Promise<void> {
  const text = 'text' as const;
  const big = 'bigint' as const;
  await db.schema
    .createTable('users')
    .addColumn('username', text, (c) => c.primaryKey())
    .addColumn('password_hash', text, (c) => c.notNull())
    .addColumn('role', text, (c) => c.notNull())
    .addColumn('created_at', big, (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('sessions')
    .addColumn('id_hash', text, (c) => c.primaryKey())
    .addColumn('username', text, (c) => c.notNull().references('users.username'))
    .addColumn('csrf_token', text, (c) => c.notNull())
    .addColumn('expires_at', big, (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('audit_log')
    .addColumn('id', serial(dialect), (c) =>
      dialect === 'postgres' ? c.primaryKey() : c.primaryKey().autoIncrement(),
    )
    .addColumn('at', big, (c) => c.notNull())
    .addColumn('username', text, (c) => c.notNull())
    .addColumn('action', text, (c) => c.notNull())
    .addColumn('target', text)
    .addColumn('detail', text, (c) => c.notNull())
    .execute();
}

/** The migrations in order, keyed by name (Kysely runs them sorted by name). */
export function migrations(dialect: Dialect): Record<string, Migration> {
  return {
    '0001-initial': { up: (db: AnyDb) => initial(db, dialect) },
    '0002-rollout-confirm': {
      up: (db: AnyDb) =>
        db.schema
          .alterTable('rollouts')
          .addColumn('confirm', 'integer', (c) => c.notNull().defaultTo(0))
          .execute(),
    },
  };
}

/** Brings the schema up to date; SERVER_DATABASE if a migration fails. */
export async function migrate(db: AnyDb, dialect: Dialect): Promise<void> {
  const migrator = new Migrator({
    db,
    provider: { getMigrations: () => Promise.resolve(migrations(dialect)) },
  });
  const { error } = await migrator.migrateToLatest();
  if (error)
    throw new FerryError(
      'SERVER_DATABASE',
      `migrating the database: ${error instanceof Error ? error.message : 'unknown error'}`,
      {
        cause: error,
      },
    );
}
