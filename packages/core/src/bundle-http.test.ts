import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { imageLikeBytes, needs, startNginx, tempDir, type Nginx } from '@ferry/testing';
import { openBundle, readBundleChunk, verifyBundle } from './bundle-reader.ts';
import { FileSource, HttpRangeSource } from './bundle-source.ts';
import { createBundle } from './bundle-writer.ts';
import { isFerryError } from './errors.ts';
import { generateKeyPair, parsePrivateKey } from './keys.ts';
import { makeKeyring, type Keyring } from './keyring.ts';
import { parsePublicKey } from './keys.ts';

const nginxNeeds = needs('nginx', 'root');
let dir: string;
let cleanup: () => Promise<void>;
let nginx: Nginx | undefined;
let ring: Keyring;

before(async () => {
  ({ dir, cleanup } = await tempDir('ferry-http-'));
  const kp = generateKeyPair();
  const key = parsePrivateKey(kp.privateKeyPem);
  ring = makeKeyring([parsePublicKey(kp.publicKeyPem)], 1);
  const v1 = imageLikeBytes(4 * 1024 * 1024, 11);
  const v2 = Buffer.from(v1);
  // A small update: 100 KiB rewritten in the middle, 50 KiB appended.
  imageLikeBytes(100 * 1024, 12).copy(v2, 2 * 1024 * 1024);
  await writeFile(join(dir, 'v1.img'), v1);
  await writeFile(join(dir, 'v2.img'), Buffer.concat([v2, imageLikeBytes(50 * 1024, 13)]));
  for (const [v, counter] of [
    ['v1', 1],
    ['v2', 2],
  ] as const)
    await createBundle({
      images: [{ name: 'rootfs', path: join(dir, `${v}.img`) }],
      compatible: 'board',
      version: `1.0.${counter}`,
      releaseCounter: counter,
      keys: [key],
      out: join(dir, `${v}.fbd`),
      created: '2026-01-01T00:00:00Z',
    });
  if (!nginxNeeds.skip) nginx = await startNginx(dir);
});
after(async () => {
  await nginx?.stop();
  await cleanup();
});

describe('bundle over HTTP', () => {
  describe('when served by nginx', () => {
    it('verifies completely through range requests', nginxNeeds, async () => {
      const src = new HttpRangeSource(`${nginx!.url}/v2.fbd`);
      const r = await verifyBundle(src, ring);
      assert.equal(r.manifest.version, '1.0.2');
      const log = (await nginx!.accessLog()).filter((l) => l.includes('/v2.fbd'));
      assert.ok(
        log.length > 3 && log.every((l) => / 206 \d+ bytes=/.test(l)),
        log.slice(0, 3).join('\n'),
      );
    });

    it('pulls only the chunks a device holding v1 lacks', nginxNeeds, async () => {
      const localSource = new FileSource(join(dir, 'v1.fbd'));
      const local = await openBundle(localSource);
      await localSource.close();
      const seeds = new Set(local.images.get('rootfs')!.index.chunks.map((c) => c.id));
      const src = new HttpRangeSource(`${nginx!.url}/v2.fbd`);
      const remote = await openBundle(src, { keyring: ring });
      const prefix = src.bytesRead;
      const missing = remote.images.get('rootfs')!.index.chunks.filter((c) => !seeds.has(c.id));
      for (const c of missing) await readBundleChunk(remote, c.id, c.size);
      const frames = missing.reduce((n, c) => n + remote.payload.get(c.id)!.length, 0);
      const total = (await readFile(join(dir, 'v2.fbd'))).length;
      assert.ok(missing.length > 0 && missing.length < 8, `${missing.length} chunks missing`);
      assert.equal(
        src.bytesRead,
        prefix + frames,
        'only the prefix and the missing frames are read',
      );
      assert.ok(src.bytesRead < total / 4, `read ${src.bytesRead} of ${total}`);
    });
  });

  describe('when the server misbehaves', () => {
    let server: Server;
    let url = '';
    let mode: 'ignore-range' | 'too-long' = 'ignore-range';
    before(async () => {
      const body = await readFile(join(dir, 'v1.fbd'));
      server = createServer((req, res) => {
        const m = /bytes=(\d+)-(\d+)/.exec(req.headers.range ?? '');
        if (mode === 'ignore-range' || !m) {
          res.writeHead(200, { 'content-length': body.length }).end(body);
          return;
        }
        // Endless-data attempt: a 206 that keeps sending past the requested range.
        const from = Number(m[1]);
        res.writeHead(206, { 'content-range': `bytes ${from}-${m[2]}/${body.length}` });
        res.end(body.subarray(from));
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const a = server.address();
      url = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}/v1.fbd`;
    });
    after(() => new Promise<void>((r) => server.close(() => r())));

    it('refuses a server that ignores Range', async () => {
      mode = 'ignore-range';
      await assert.rejects(openBundle(new HttpRangeSource(url)), (e) => isFerryError(e, 'IO'));
    });
    it('stops reading a response longer than the range asked for', async () => {
      mode = 'too-long';
      await assert.rejects(openBundle(new HttpRangeSource(url)), (e) => isFerryError(e, 'IO'));
    });
  });
});
