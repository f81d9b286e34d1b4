import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseRange, startFileServer } from './file-server.ts';

describe('parseRange', () => {
  describe('when the header is absent', () => {
    it('returns undefined', () => assert.equal(parseRange(undefined, 10), undefined));
  });
  describe('when the range is a-b, a- or -n', () => {
    it('returns inclusive bounds clipped to the size', () => {
      assert.deepEqual(parseRange('bytes=2-4', 10), [2, 4]);
      assert.deepEqual(parseRange('bytes=8-', 10), [8, 9]);
      assert.deepEqual(parseRange('bytes=-3', 10), [7, 9]);
      assert.deepEqual(parseRange('bytes=5-100', 10), [5, 9]);
    });
  });
  describe('when the range is unsatisfiable or malformed', () => {
    it('returns bad', () => {
      assert.equal(parseRange('bytes=10-', 10), 'bad');
      assert.equal(parseRange('bytes=5-2', 10), 'bad');
      assert.equal(parseRange('bytes=0-1,3-4', 10), 'bad');
    });
  });
});

describe('startFileServer', () => {
  describe('when a range of a file is requested', () => {
    it('answers 206 with exactly those bytes and counts them', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'ferry-vm-srv-'));
      writeFileSync(join(dir, 'f'), '0123456789');
      const srv = await startFileServer({ '/f': { file: join(dir, 'f') } });
      try {
        const res = await fetch(`http://127.0.0.1:${srv.port}/f`, {
          headers: { range: 'bytes=2-4' },
        });
        assert.equal(res.status, 206);
        assert.equal(await res.text(), '234');
        assert.equal(res.headers.get('content-range'), 'bytes 2-4/10');
        assert.equal(srv.bytesSent.get('/f'), 3);
        assert.equal((await fetch(`http://127.0.0.1:${srv.port}/nope`)).status, 404);
      } finally {
        await srv.close();
      }
    });
  });
});
