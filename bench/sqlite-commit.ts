/**
 * SQLite commit micro-benchmark: the check-in's three statements (nonce insert, device update
 * returning the row, open rollouts) on 2,000 devices, one transaction per check-in or 16 per
 * transaction (with or without a savepoint each), with SQLite's automatic checkpoints or with
 * none on this connection (the server checkpoints from a worker thread). Per check-in: CPU
 * (user + system) and wall time on the calling thread. The tables copy the columns and indexes
 * of packages/server/src/migrations.ts that these statements touch.
 *
 *   node bench/sqlite-commit.ts [--checkins 40000]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { DatabaseSync } from 'node:sqlite';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const DEVICES = 2000;

/** One configuration's figures, µs per check-in. */
export interface CommitFigures {
  batch: number;
  savepoints: boolean;
  autoCheckpoint: boolean;
  cpuUs: number;
  wallUs: number;
}

function schema(db: DatabaseSync): void {
  db.exec(`CREATE TABLE devices (id text primary key, public_key text not null unique,
    status text not null, compatible text not null, hardware_id text, agent_version text,
    booted_slot text, release text, release_counter bigint, slots text not null,
    attributes text not null, tags text not null, channel text not null, bucket integer not null,
    last_seen bigint, created_at bigint not null);
  CREATE INDEX devices_target ON devices (channel, compatible);
  CREATE TABLE request_nonces (device_id text not null, nonce text not null,
    expires_at bigint not null, PRIMARY KEY (device_id, nonce));
  CREATE INDEX request_nonces_expiry ON request_nonces (expires_at);
  CREATE TABLE rollout_devices (rollout_id text not null, device_id text not null,
    state text not null, progress integer, final integer not null, updated_at bigint,
    PRIMARY KEY (rollout_id, device_id));
  CREATE INDEX rollout_devices_device ON rollout_devices (device_id);`);
}

/** Runs `checkins` check-ins in one configuration on a fresh database file. */
export function commitRun(
  checkins: number,
  batch: number,
  savepoints: boolean,
  autoCheckpoint: boolean,
): CommitFigures {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-sqlite-commit-'));
  const db = new DatabaseSync(join(dir, 'bench.db'));
  try {
    db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;');
    if (!autoCheckpoint) db.exec('PRAGMA wal_autocheckpoint = 0');
    schema(db);
    const ids = Array.from({ length: DEVICES }, () => randomBytes(16).toString('hex'));
    const add = db.prepare(
      `INSERT INTO devices VALUES (?, ?, 'accepted', 'x', NULL, NULL, NULL, NULL, NULL, '[]', '{}', '[]', 'stable', 1, 1, 1)`,
    );
    for (const id of ids) add.run(id, id + 'k');
    const nonce = db.prepare(
      'INSERT INTO request_nonces (device_id, nonce, expires_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING',
    );
    const update = db.prepare(
      'UPDATE devices SET compatible = ?, hardware_id = ?, agent_version = ?, booted_slot = ?, ' +
        'release = ?, release_counter = ?, slots = ?, attributes = ?, last_seen = ? WHERE id = ? RETURNING *',
    );
    const open = db.prepare(
      'SELECT rollout_id, state FROM rollout_devices WHERE device_id = ? AND final = 0',
    );
    const [begin, commit] = [db.prepare('BEGIN IMMEDIATE'), db.prepare('COMMIT')];
    const [sp, release] = [db.prepare('SAVEPOINT c'), db.prepare('RELEASE c')];
    const nonces = Array.from({ length: checkins }, () => randomBytes(16).toString('base64url'));
    const slots = '[{"name":"a","version":"1.0.0","releaseCounter":1,"health":"good"}]';
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    for (let i = 0; i < checkins; i += batch) {
      begin.run();
      for (let j = i; j < Math.min(i + batch, checkins); j++) {
        const id = ids[j % DEVICES]!;
        if (savepoints) sp.run();
        nonce.run(id, nonces[j]!, Date.now() + 300_000);
        update.get('bench', 'hw', '1', 'a', '1.0.0', 1, slots, '{"site":"s1"}', Date.now(), id);
        open.all(id);
        if (savepoints) release.run();
      }
      commit.run();
    }
    const cpu = process.cpuUsage(c0);
    return {
      batch,
      savepoints,
      autoCheckpoint,
      cpuUs: (cpu.user + cpu.system) / checkins,
      wallUs: ((performance.now() - t0) * 1000) / checkins,
    };
  } finally {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { checkins: { type: 'string', default: '40000' } } });
  const n = Number(values.checkins);
  const runs: Array<[number, boolean, boolean]> = [
    [1, false, true],
    [16, false, true],
    [1, false, false],
    [16, true, false],
  ];
  console.log('per transaction  savepoints  auto checkpoints  CPU µs/check-in  wall µs/check-in');
  for (const [batch, sp, auto] of runs) {
    const f = commitRun(n, batch, sp, auto);
    console.log(
      [
        String(batch).padStart(15),
        (sp ? 'yes' : 'no').padStart(11),
        (auto ? 'yes' : 'no').padStart(17),
        f.cpuUs.toFixed(1).padStart(16),
        f.wallUs.toFixed(1).padStart(17),
      ].join(' '),
    );
  }
}
