/**
 * SQLite through Node's built-in `node:sqlite` (no native module to compile), adapted to the
 * better-sqlite3 interface Kysely's SQLite dialect expects. Prepared statements are cached by
 * SQL text: Kysely emits the same text for the same query shape.
 *
 * The one connection is shared with the check-in hot path (checkin-store-sqlite.ts), which runs
 * its statements synchronously and directly. Kysely holds the connection across awaits inside
 * a transaction, so the driver tracks when Kysely holds it: the hot path then waits, and its
 * statements never land inside someone else's transaction.
 */
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { startCheckpointer, type Checkpointer } from './sqlite-checkpointer.ts';
import {
  CompiledQuery,
  SqliteDialect,
  type DatabaseConnection,
  type Driver,
  type QueryResult,
} from 'kysely';

const STATEMENT_CACHE = 512;

/** The shared connection and who holds it. */
export class SqliteHandle {
  readonly db: DatabaseSync;
  readonly #cache = new Map<string, StatementSync>();
  #held = false;
  #waiters: (() => void)[] = [];
  readonly #checkpointer: Checkpointer | undefined;

  constructor(db: DatabaseSync, checkpointer?: Checkpointer) {
    this.db = db;
    this.#checkpointer = checkpointer;
  }

  /** A prepared statement for `sql`, cached. */
  prepare(sql: string): StatementSync {
    let s = this.#cache.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      if (this.#cache.size >= STATEMENT_CACHE) this.#cache.clear();
      this.#cache.set(sql, s);
    }
    return s;
  }

  /** Kysely took the connection (its own mutex already serialises Kysely users). */
  hold(): void {
    this.#held = true;
  }

  release(): void {
    this.#held = false;
    for (const w of this.#waiters.splice(0)) w();
  }

  /**
   * Runs `fn` with the connection to itself: at once (synchronously) when Kysely does not hold
   * it, else as soon as Kysely releases it. `fn` must be synchronous, so nothing interleaves.
   */
  exclusive<T>(fn: (h: SqliteHandle) => T): T | Promise<T> {
    if (!this.#held) return fn(this);
    return this.#wait().then(() => this.exclusive(fn));
  }

  #wait(): Promise<void> {
    return new Promise((res) => this.#waiters.push(res));
  }

  async close(): Promise<void> {
    await this.#checkpointer?.stop();
    this.#cache.clear();
    this.db.close();
  }
}

class NodeSqliteConnection implements DatabaseConnection {
  readonly #h: SqliteHandle;

  constructor(h: SqliteHandle) {
    this.#h = h;
  }

  executeQuery<R>(q: CompiledQuery): Promise<QueryResult<R>> {
    const stmt = this.#h.prepare(q.sql);
    const params = q.parameters as never[];
    if (stmt.columns().length > 0) return Promise.resolve({ rows: stmt.all(...params) as R[] });
    const { changes, lastInsertRowid } = stmt.run(...params);
    return Promise.resolve({
      insertId: BigInt(lastInsertRowid),
      numAffectedRows: BigInt(changes),
      rows: [],
    });
  }

  streamQuery<R>(): AsyncIterableIterator<QueryResult<R>> {
    throw new Error('streaming is not supported by the node:sqlite driver');
  }
}

/** Kysely's driver over the shared handle: one connection, marked held while Kysely uses it. */
class NodeSqliteDriver implements Driver {
  readonly #h: SqliteHandle;
  readonly #conn: NodeSqliteConnection;

  constructor(h: SqliteHandle) {
    this.#h = h;
    this.#conn = new NodeSqliteConnection(h);
  }

  async init(): Promise<void> {}

  acquireConnection(): Promise<DatabaseConnection> {
    this.#h.hold();
    return Promise.resolve(this.#conn);
  }

  async beginTransaction(c: DatabaseConnection): Promise<void> {
    await c.executeQuery(CompiledQuery.raw('begin immediate'));
  }

  async commitTransaction(c: DatabaseConnection): Promise<void> {
    await c.executeQuery(CompiledQuery.raw('commit'));
  }

  async rollbackTransaction(c: DatabaseConnection): Promise<void> {
    await c.executeQuery(CompiledQuery.raw('rollback'));
  }

  releaseConnection(): Promise<void> {
    this.#h.release();
    return Promise.resolve();
  }

  destroy(): Promise<void> {
    return this.#h.close();
  }
}

class NodeSqliteDialect extends SqliteDialect {
  readonly #h: SqliteHandle;

  constructor(h: SqliteHandle) {
    super({ database: () => Promise.reject(new Error('unused')) });
    this.#h = h;
  }

  override createDriver(): Driver {
    return new NodeSqliteDriver(this.#h);
  }
}

/**
 * Opens a SQLite file (or ':memory:'): the Kysely dialect and the shared handle for the hot
 * path. WAL mode with synchronous=NORMAL: a crash loses at most the last transactions, never
 * consistency; busy_timeout lets a second process (the CLI, another worker) wait instead of
 * failing. A file's WAL is checkpointed by a worker thread (sqlite-checkpointer.ts), not by
 * the commits of this connection.
 */
export function openSqlite(
  path: string,
  onError?: (message: string) => void,
): { dialect: SqliteDialect; handle: SqliteHandle } {
  const db = new DatabaseSync(path);
  db.exec('PRAGMA journal_mode = WAL');
  db.exec('PRAGMA synchronous = NORMAL');
  db.exec('PRAGMA foreign_keys = ON');
  db.exec('PRAGMA busy_timeout = 5000');
  // LIKE as in PostgreSQL and in matchesFilter: case-sensitive.
  db.exec('PRAGMA case_sensitive_like = ON');
  let checkpointer: Checkpointer | undefined;
  if (path !== ':memory:' && path !== '') {
    db.exec('PRAGMA wal_autocheckpoint = 0');
    db.exec(`PRAGMA journal_size_limit = ${64 * 1024 * 1024}`);
    checkpointer = startCheckpointer(path, onError);
  }
  const handle = new SqliteHandle(db, checkpointer);
  return { dialect: new NodeSqliteDialect(handle), handle };
}
