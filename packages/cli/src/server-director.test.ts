/** `ferry server --previous-director-key`: the replaced key signs beside the new one. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeKeyPair } from '@ferry/core';

const FERRY = join(import.meta.dirname, '..', 'bin', 'ferry');

/** Runs `ferry server ARGS` until it logs server.started (or exits); returns that log entry. */
function startLog(
  args: string[],
): Promise<{ code: number | null; started?: Record<string, unknown>; out: string }> {
  return new Promise((res) => {
    const child = spawn(FERRY, ['server', '--port', '0', ...args], {
      env: { ...process.env, FERRY_ADMIN_PASSWORD: 'director test password' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    const onData = (b: Buffer) => {
      out += b.toString();
      const line = out.split('\n').find((l) => l.includes('"server.started"'));
      if (line) {
        child.kill('SIGTERM');
        res({ code: null, started: JSON.parse(line) as Record<string, unknown>, out });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    child.once('exit', (code) => res({ code, out }));
  });
}

describe('ferry server --previous-director-key', () => {
  describe('when a rotation is under way', () => {
    it('signs with the new key and the previous one', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'ferry-director-'));
      try {
        const fresh = await writeKeyPair(join(dir, 'new'));
        const old = await writeKeyPair(join(dir, 'old'));
        const r = await startLog([
          '--db',
          join(dir, 'fleet.db'),
          '--director-key',
          join(dir, 'new.key'),
          '--previous-director-key',
          join(dir, 'old.key'),
        ]);
        assert.ok(r.started, r.out);
        assert.deepEqual(r.started.directorKeyIds, [fresh.keyId, old.keyId]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe('when no current key is given', () => {
    it('is a usage error', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'ferry-director-'));
      try {
        await writeKeyPair(join(dir, 'old'));
        const r = await startLog([
          '--db',
          join(dir, 'fleet.db'),
          '--previous-director-key',
          join(dir, 'old.key'),
        ]);
        assert.equal(r.started, undefined);
        assert.equal(r.code, 2, r.out);
        assert.match(r.out, /USAGE/);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});
