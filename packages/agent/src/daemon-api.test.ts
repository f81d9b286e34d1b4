import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { stat, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { isFerryError } from '@ferry/core';
import { imageLikeBytes, makeDevice, needs, type DeviceFixture } from '@ferry/testing';
import { Agent } from './agent.ts';
import { Daemon, type StampedEvent } from './daemon.ts';
import { listenDaemonApi, type DaemonApiServer } from './daemon-api.ts';
import { DaemonClient, probeDaemon } from './daemon-client.ts';
import { FeedAgent, latch } from './daemon-test-agent.ts';

const sfdisk = needs('sfdisk');
let dev: DeviceFixture;
let feed: FeedAgent;
let daemon: Daemon;
let api: DaemonApiServer;
let client: DaemonClient;
let bundle: string;

/** A request written by hand, for what the client never sends. */
function raw(
  method: string,
  path: string,
  body?: string,
): Promise<{ status: number; headers: Record<string, unknown>; json: { code?: string } }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: api.socket, method, path }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () =>
        resolve({
          status: res.statusCode!,
          headers: res.headers,
          json: JSON.parse(text) as { code?: string },
        }),
      );
    });
    req.on('error', reject);
    req.end(body);
  });
}

before(async () => {
  if (sfdisk.skip) return;
  dev = await makeDevice({ slotMiB: 4, extraToml: '[daemon]\nreboot = "never"\n' });
  const image = join(dev.root, 'v1.img');
  await writeFile(image, imageLikeBytes(2 * 1024 * 1024, 41));
  bundle = await dev.bundle(image, { version: '1.0.0', counter: 1 });
  feed = new FeedAgent(await Agent.open({ root: dev.root }));
  daemon = new Daemon(feed);
  api = await listenDaemonApi(daemon, feed.config.daemon.socket);
  client = new DaemonClient(api.socket);
});
after(async () => {
  await daemon?.stop();
  await api?.close();
  await dev?.cleanup();
});

describe('daemon API', () => {
  describe('when it starts listening', () => {
    it('creates the socket directory and opens the socket to its group only', sfdisk, async () => {
      assert.equal(api.socket, join(dev.root, 'run/ferry/ferry.sock'));
      const st = await stat(api.socket);
      assert.ok(st.isSocket());
      assert.equal(st.mode & 0o777, 0o660);
      assert.equal(await probeDaemon(api.socket), 'up');
    });
  });

  describe('GET /v1/status', () => {
    it('answers the daemon state and the device status', sfdisk, async () => {
      const r = await client.status();
      assert.equal(r.daemon.state, 'idle');
      assert.equal(r.daemon.policy.install, 'auto');
      assert.equal(r.system.compatible, 'test-board');
      assert.equal(r.system.booted?.slot, 'rootfs.0');
    });
  });

  describe('POST /v1/rollback', () => {
    describe('when no other slot holds a good release', () => {
      it('answers 422 with ROLLBACK_NO_TARGET', sfdisk, async () => {
        const r = await raw('POST', '/v1/rollback');
        assert.equal(r.status, 422);
        assert.equal(r.json.code, 'ROLLBACK_NO_TARGET');
      });
    });
  });

  describe('POST /v1/install with a bundle', () => {
    it('streams progress then the commit, and answers the result', sfdisk, async () => {
      const events: StampedEvent[] = [];
      const r = await client.install({ source: bundle }, (e) => events.push(e));
      assert.equal(r.action, 'committed');
      assert.equal(r.release?.slot, 'rootfs.1');
      assert.equal(r.reboot, 'required', 'a bundle install leaves the reboot to the caller');
      const ids = events.map((e) => e.id);
      const firstProgress = ids.indexOf('install.progress');
      assert.ok(firstProgress >= 0, ids.join(','));
      assert.ok(firstProgress < ids.indexOf('install.committed'), ids.join(','));
      assert.ok(ids.indexOf('install.committed') < ids.indexOf('daemon.operation-finished'));
      const st = await client.status();
      assert.equal(st.system.primary, 'B');
      assert.equal(st.daemon.state, 'reboot-required');
    });
  });

  describe('when an install is running', () => {
    it('answers a second one 409 DAEMON_BUSY', sfdisk, async () => {
      const gate = latch();
      feed.gate = gate.wait;
      const started = new Promise<void>((resolve) => {
        const off = daemon.subscribe((e) => {
          if (e.id !== 'daemon.operation-started') return;
          off();
          resolve();
        });
      });
      const first = client.install({ source: bundle });
      await started;
      const second = await raw('POST', '/v1/install', JSON.stringify({ source: bundle }));
      assert.equal(second.status, 409);
      assert.equal(second.json.code, 'DAEMON_BUSY');
      await assert.rejects(client.mark('good'), (e) => isFerryError(e, 'DAEMON_BUSY'));
      gate.open();
      feed.gate = undefined;
      assert.equal((await first).action, 'committed');
    });
  });

  describe('POST /v1/mark', () => {
    it('marks a slot and the bootloader shows it', sfdisk, async () => {
      const r = await client.mark('good', 'other');
      assert.deepEqual(r, { slot: 'rootfs.1', bootname: 'B', marked: 'good' });
      const st = await client.status();
      assert.equal(st.system.slots[1]!.boot?.state, 'good');
    });
  });

  describe('POST /v1/rollback', () => {
    describe('when the other slot holds a good release', () => {
      it('makes it the next boot', sfdisk, async () => {
        await client.mark('active', 'A');
        const r = await client.rollback();
        assert.deepEqual(r, { from: 'rootfs.0', to: 'rootfs.1' });
        assert.equal((await client.status()).system.primary, 'B');
      });
    });
  });

  describe('GET /v1/events', () => {
    it('starts with a status snapshot and follows the daemon', sfdisk, async () => {
      const ac = new AbortController();
      const seen: StampedEvent[] = [];
      let opened = (): void => undefined;
      const open = new Promise<void>((r) => (opened = r));
      const stream = client.events((e) => seen.push(e), ac.signal, opened);
      await open;
      const finished = new Promise<void>((resolve) => {
        const off = daemon.subscribe((e) => {
          if (e.id !== 'daemon.operation-finished') return;
          off();
          resolve();
        });
      });
      await client.rebase('beta');
      await finished;
      // The daemon wrote the event; give the stream a moment to carry it.
      for (let i = 0; i < 50 && !seen.some((e) => e.id === 'daemon.operation-finished'); i++)
        await new Promise((r) => setTimeout(r, 10));
      ac.abort();
      await stream;
      assert.equal(seen[0]?.id, 'daemon.status');
      assert.ok(seen.some((e) => e.id === 'daemon.operation-finished'));
      assert.deepEqual(feed.calls.slice(-1), ['rebase:beta']);
    });
  });

  describe('when a request is malformed', () => {
    const cases: Array<[string, string, string]> = [
      ['/v1/install', 'not json', 'a body that is not JSON'],
      ['/v1/install', '[1]', 'a body that is not an object'],
      ['/v1/install', '{"source":"relative.fbd"}', 'a relative bundle path'],
      ['/v1/install', '{"source":"/x","force":true}', 'an unknown field'],
      ['/v1/mark', '{"state":"meh"}', 'an unknown mark state'],
      ['/v1/rebase', '{}', 'a rebase without a channel'],
      ['/v1/rebase', '{"channel":"../x"}', 'a channel that is not a channel name'],
      ['/v1/install', `{"source":"/${'a'.repeat(70_000)}"}`, 'a body over 64 KiB'],
    ];
    for (const [path, body, what] of cases)
      it(`answers 400 DAEMON_REQUEST_INVALID for ${what}`, sfdisk, async () => {
        const r = await raw('POST', path, body);
        assert.equal(r.status, 400);
        assert.equal(r.json.code, 'DAEMON_REQUEST_INVALID');
      });
  });

  describe('when no route matches', () => {
    it('answers 404 DAEMON_ROUTE_UNKNOWN for an unknown path', sfdisk, async () => {
      const r = await raw('GET', '/v1/nope');
      assert.equal(r.status, 404);
      assert.equal(r.json.code, 'DAEMON_ROUTE_UNKNOWN');
    });
    it('answers 405 with Allow for a wrong method', sfdisk, async () => {
      const r = await raw('GET', '/v1/install');
      assert.equal(r.status, 405);
      assert.equal(r.headers.allow, 'POST');
      assert.equal(r.json.code, 'DAEMON_ROUTE_UNKNOWN');
    });
  });

  describe('when the socket path is taken', () => {
    it('refuses a live daemon with DAEMON_ALREADY_RUNNING', sfdisk, async () => {
      await assert.rejects(listenDaemonApi(daemon, api.socket), (e) =>
        isFerryError(e, 'DAEMON_ALREADY_RUNNING'),
      );
    });
    it('replaces a stale socket file', sfdisk, async () => {
      const path = join(dev.root, 'run/stale.sock');
      const py = `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(path)})`;
      assert.equal(spawnSync('python3', ['-c', py]).status, 0);
      assert.equal(await probeDaemon(path), 'down');
      const second = await listenDaemonApi(daemon, path);
      assert.equal((await new DaemonClient(path).status()).daemon.state, 'reboot-required');
      await second.close();
    });
    it('refuses to replace a file that is not a socket', sfdisk, async () => {
      const path = join(dev.root, 'run/not-a-socket');
      await writeFile(path, 'keep me');
      await assert.rejects(listenDaemonApi(daemon, path), (e) => isFerryError(e, 'IO'));
    });
  });

  describe('DaemonClient', () => {
    it('reports DAEMON_UNAVAILABLE when nothing listens', sfdisk, async () => {
      const path = join(dev.root, 'run/none.sock');
      assert.equal(await probeDaemon(path), 'down');
      await assert.rejects(new DaemonClient(path).status(), (e) =>
        isFerryError(e, 'DAEMON_UNAVAILABLE'),
      );
    });
    it('refuses an answer that is not a Ferry error body', sfdisk, async () => {
      const path = join(dev.root, 'run/other.sock');
      const other = createServer((s) => {
        s.end('HTTP/1.1 500 Oops\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}');
        s.on('finish', () => s.destroy());
      });
      await new Promise<void>((r) => other.listen(path, r));
      await assert.rejects(new DaemonClient(path).status(), (e) =>
        isFerryError(e, 'DAEMON_RESPONSE_INVALID'),
      );
      await new Promise((r) => other.close(r));
    });
  });
});
