/**
 * `ferry server --workers N` end to end: the built binary, N node:cluster workers on one
 * SQLite file, one director key across them, replays refused whichever worker answers, and a
 * clean stop that takes the workers with it.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer as netServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AdminClient, DeviceClient } from '@ferry/server';

const FERRY = join(import.meta.dirname, '..', 'bin', 'ferry');
const PASSWORD = 'workers test password';

function freePort(): Promise<number> {
  return new Promise((res) => {
    const s = netServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

function started(child: ChildProcess): Promise<void> {
  return new Promise((res, rej) => {
    let out = '';
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes('"server.started"')) res();
    });
    child.once('exit', (c) => rej(new Error(`ferry server exited ${c}: ${out}`)));
  });
}

const inventory = {
  compatible: 'acme-widget',
  bootedSlot: 'a',
  releaseCounter: 1,
  slots: [{ name: 'a', version: '1.0.0', releaseCounter: 1, health: 'good' as const }],
  attributes: {},
};

describe('ferry server --workers', () => {
  let dir: string;
  let child: ChildProcess;
  let url: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-workers-'));
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    child = spawn(
      FERRY,
      ['server', '--db', join(dir, 'fleet.db'), '--port', String(port), '--workers', '2'],
      {
        env: { ...process.env, FERRY_ADMIN_PASSWORD: PASSWORD },
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    await started(child);
  });
  after(() => {
    if (child.exitCode === null) child.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  describe('when two workers serve one SQLite database', () => {
    it('answers with one director key, and refuses a replay on any worker', async () => {
      // Fresh connections spread over the workers.
      const keys = new Set<string>();
      for (let i = 0; i < 8; i++) {
        const r = await fetch(url + '/api/v1/director/key', { headers: { connection: 'close' } });
        keys.add(((await r.json()) as { keyId: string }).keyId);
      }
      assert.equal(keys.size, 1);
      const admin = new AdminClient(url);
      await admin.login('admin', PASSWORD);
      const { token } = await admin.post<{ token: string }>('/api/v1/enrolment-tokens', {
        uses: 4,
      });
      const d = new DeviceClient(url);
      await d.enrol(inventory, token);
      const body = Buffer.from(JSON.stringify({ inventory }));
      const headers = {
        ...d.signedHeaders('POST', '/api/v1/device/checkin', body),
        connection: 'close',
      };
      const codes: number[] = [];
      for (let i = 0; i < 6; i++) {
        const r = await fetch(url + '/api/v1/device/checkin', { method: 'POST', headers, body });
        codes.push(r.status);
        await r.arrayBuffer();
      }
      assert.deepEqual(codes, [200, 401, 401, 401, 401, 401]);
    });
  });

  describe('when stopped', () => {
    it('exits 0 and stops its workers', async () => {
      const exited = new Promise<number | null>((res) => child.once('exit', res));
      child.kill('SIGTERM');
      assert.equal(await exited, 0);
      const r = await fetch(url + '/healthz').catch((e: unknown) => e);
      assert.ok(r instanceof Error);
    });
  });
});
