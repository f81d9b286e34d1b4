/**
 * The server conformance suite, run against every database backend: SQLite (a temp file) and
 * a throwaway PostgreSQL cluster (skipped without Debian's postgresql, required under CI).
 */
import { describe, it, before, after } from 'node:test';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { have, needs, startPostgres, type Postgres } from '@ferry/testing';
import { checkinConformance } from './checkin.test.ts';
import { serverConformance } from './conformance.test.ts';

let pg: Postgres | undefined;
let n = 0;

describe('fleet server on SQLite', () => {
  const file = () =>
    Promise.resolve(join(mkdtempSync(join(tmpdir(), 'ferry-server-')), `fleet-${n++}.db`));
  serverConformance(file);
  describe('check-in hot path', () => checkinConformance(file));
});

describe('fleet server on PostgreSQL', needs('postgres'), () => {
  before(async () => {
    if (have('postgres')) pg = await startPostgres();
  });
  after(async () => {
    await pg?.stop();
  });
  serverConformance(() => pg!.createDatabase(`fleet_${n++}`));
  describe('check-in hot path', () => checkinConformance(() => pg!.createDatabase(`fleet_${n++}`)));
  it('is running', () => {
    if (!pg) throw new Error('postgres did not start');
  });
});
