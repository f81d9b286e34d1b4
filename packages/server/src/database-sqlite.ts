/**
 * SQLite through Node's built-in `node:sqlite` (no native module to compile), adapted to the
 * better-sqlite3 interface Kysely's SqliteDialect expects. Prepared statements are cached by
 * SQL text: Kysely emits the same text for the same query shape.
 */
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { SqliteDialect, type SqliteDatabase, type SqliteStatement } from 'kysely';

const STATEMENT_CACHE = 512;

class NodeSqliteStatement implements SqliteStatement {
  readonly reader: boolean;
  readonly #stmt: StatementSync;

  constructor(stmt: StatementSync) {
    this.#stmt = stmt;
    this.reader = stmt.columns().length > 0;
  }

  all(parameters: ReadonlyArray<unknown>): unknown[] {
    return this.#stmt.all(...(parameters as never[]));
  }

  run(parameters: ReadonlyArray<unknown>): {
    changes: number | bigint;
    lastInsertRowid: number | bigint;
  } {
    return this.#stmt.run(...(parameters as never[]));
  }

  iterate(parameters: ReadonlyArray<unknown>): IterableIterator<unknown> {
    return this.#stmt.iterate(...(parameters as never[])) as IterableIterator<unknown>;
  }
}

class NodeSqliteDatabase implements SqliteDatabase {
  readonly #db: DatabaseSync;
  readonly #cache = new Map<string, NodeSqliteStatement>();

  constructor(db: DatabaseSync) {
    this.#db = db;
  }

  prepare(sql: string): SqliteStatement {
    let s = this.#cache.get(sql);
    if (!s) {
      s = new NodeSqliteStatement(this.#db.prepare(sql));
      if (this.#cache.size >= STATEMENT_CACHE) this.#cache.clear();
      this.#cache.set(sql, s);
    }
    return s;
  }

  close(): void {
    this.#cache.clear();
    this.#db.close();
  }
}

/**
 * A Kysely dialect over a SQLite file (or ':memory:'). WAL mode with synchronous=NORMAL: a
 * crash loses at most the last transactions, never consistency; busy_timeout lets a second
 * process (the CLI) wait instead of failing.
 */
export function nodeSqliteDialect(path: string): SqliteDialect {
  return new SqliteDialect({
    database: () => {
      const db = new DatabaseSync(path);
      db.exec('PRAGMA journal_mode = WAL');
      db.exec('PRAGMA synchronous = NORMAL');
      db.exec('PRAGMA foreign_keys = ON');
      db.exec('PRAGMA busy_timeout = 5000');
      // LIKE as in PostgreSQL and in matchesFilter: case-sensitive.
      db.exec('PRAGMA case_sensitive_like = ON');
      return Promise.resolve(new NodeSqliteDatabase(db));
    },
  });
}
