/**
 * One entry point to the fleet database: `openDatabase(url)` opens SQLite (the default: a
 * file path or `sqlite:PATH`) or PostgreSQL (`postgres://...`), runs the migrations and returns
 * one Kysely instance. Everything above this file is dialect-free.
 */
import { Kysely, PostgresDialect, type Dialect as KyselyDialect } from 'kysely';
import pg from 'pg';
import { FerryError } from '@ferry/core';
import type { CheckinStore } from './checkin-store.ts';
import { postgresCheckinStore } from './checkin-store-postgres.ts';
import { sqliteCheckinStore } from './checkin-store-sqlite.ts';
import { openSqlite } from './database-sqlite.ts';
import type { FleetDb } from './db-schema.ts';
import { migrate } from './migrations.ts';

/** The database engines the server supports. */
export type Dialect = 'sqlite' | 'postgres';

/** An open, migrated fleet database. */
export interface Database {
  db: Kysely<FleetDb>;
  dialect: Dialect;
  /** The check-in hot path's prepared statements on the same connection or pool. */
  checkins: CheckinStore;
  close(): Promise<void>;
}

/** What an engine opens: Kysely's dialect and the hot path over the same connection(s). */
interface Engine {
  dialect: KyselyDialect;
  checkins: CheckinStore;
}

const INT8_OID = 20;

function postgresEngine(url: string): Engine {
  const pool = new pg.Pool({
    connectionString: url,
    max: 10,
    // bigint columns hold millisecond times and counters, all below 2^53: numbers, not strings.
    types: {
      getTypeParser: ((oid: number, format?: 'text' | 'binary'): unknown =>
        oid === INT8_OID
          ? (v: string) => Number(v)
          : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
    },
  });
  return { dialect: new PostgresDialect({ pool }), checkins: postgresCheckinStore(pool) };
}

function sqliteEngine(path: string): Engine {
  const { dialect, handle } = openSqlite(path);
  return { dialect, checkins: sqliteCheckinStore(handle) };
}

/** The dialect table: URL scheme to engine. */
const ENGINES: Record<Dialect, (target: string) => Engine> = {
  sqlite: sqliteEngine,
  postgres: postgresEngine,
};

/** Which engine a database URL names, and what to pass it. */
export function parseDatabaseUrl(url: string): { dialect: Dialect; target: string } {
  if (/^postgres(ql)?:\/\//.test(url)) return { dialect: 'postgres', target: url };
  const path = url.startsWith('sqlite:') ? url.slice('sqlite:'.length) : url;
  if (path === '' || /^[a-z][a-z0-9+.-]*:\/\//i.test(path))
    throw new FerryError('SERVER_CONFIG', `unsupported database URL ${JSON.stringify(url)}`);
  return { dialect: 'sqlite', target: path };
}

/**
 * Opens and migrates the database at `url`.
 *
 * @example
 * const database = await openDatabase('ferry.db');               // SQLite file
 * const database = await openDatabase('postgres://ferry@db/ferry'); // PostgreSQL
 */
export async function openDatabase(url: string): Promise<Database> {
  const { dialect, target } = parseDatabaseUrl(url);
  let engine: Engine;
  try {
    engine = ENGINES[dialect](target);
  } catch (e) {
    throw new FerryError('SERVER_DATABASE', `opening ${dialect} database: ${String(e)}`, {
      cause: e,
    });
  }
  const db = new Kysely<FleetDb>({ dialect: engine.dialect });
  try {
    await migrate(db, dialect);
  } catch (e) {
    await db.destroy().catch(() => undefined);
    if (e instanceof FerryError) throw e;
    throw new FerryError('SERVER_DATABASE', `opening ${dialect} database: ${String(e)}`, {
      cause: e,
    });
  }
  return { db, dialect, checkins: engine.checkins, close: () => db.destroy() };
}
