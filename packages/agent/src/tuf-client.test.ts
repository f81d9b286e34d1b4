import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { createServer, type ServerResponse } from 'node:http';
import { dirname, join } from 'node:path';
import { Metadata, MetadataKind, Signature, type Root } from '@tufjs/models';
import { isFerryError, type ErrorCode } from '@ferry/core';
import { needs, startNginx, tempDir } from '@ferry/testing';
import { createTufClient, type TufClientOptions } from './tuf-client.ts';

const BIN = join(import.meta.dirname, '..', 'bin', 'ferry-tuf-client');
const DAY = 86_400_000;

interface Signer {
  id: string;
  pub: string;
  priv: KeyObject;
}

function newSigner(): Signer {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const pub = Buffer.from(publicKey.export({ format: 'jwk' }).x as string, 'base64url').toString(
    'hex',
  );
  return { id: createHash('sha256').update(pub).digest('hex'), pub, priv: privateKey };
}

const iso = (msFromNow: number) =>
  new Date(Date.now() + msFromNow).toISOString().replace(/\.\d{3}Z$/, 'Z');
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

// One signature for every role: the overloads of Metadata.fromJSON differ only in the result type.
const fromJSON = Metadata.fromJSON.bind(Metadata) as (k: MetadataKind, d: object) => Metadata<Root>;

type Role = 'root' | 'targets' | 'snapshot' | 'timestamp';
const KIND = {
  root: MetadataKind.Root,
  targets: MetadataKind.Targets,
  snapshot: MetadataKind.Snapshot,
  timestamp: MetadataKind.Timestamp,
};

/** A consistent-snapshot TUF repository on disk, signed with @tufjs/models (the test's repo side). */
class TestRepo {
  readonly dir: string;
  keys: Record<Role, { signers: Signer[]; threshold: number }>;
  version = { root: 0, targets: 0, snapshot: 0, timestamp: 0 };
  files: Record<string, { length: number; hashes: { sha256: string } }> = {};
  expires: Record<Role, string> = {
    root: iso(365 * DAY),
    targets: iso(90 * DAY),
    snapshot: iso(7 * DAY),
    timestamp: iso(DAY),
  };
  last: Record<string, Buffer> = {};

  constructor(dir: string) {
    this.dir = dir;
    const one = () => ({ signers: [newSigner()], threshold: 1 });
    this.keys = { root: one(), targets: one(), snapshot: one(), timestamp: one() };
  }

  private async write(
    role: Role,
    signed: Record<string, unknown>,
    signers: Signer[],
    name: string,
  ) {
    const md = fromJSON(KIND[role], {
      signed: { _type: role, spec_version: '1.0.31', expires: this.expires[role], ...signed },
      signatures: [],
    });
    for (const s of signers)
      md.sign(
        (data) => new Signature({ keyID: s.id, sig: sign(null, data, s.priv).toString('hex') }),
        true,
      );
    const bytes = Buffer.from(JSON.stringify(md.toJSON()));
    await mkdir(join(this.dir, 'metadata'), { recursive: true });
    await writeFile(join(this.dir, 'metadata', name), bytes);
    this.last[role] = bytes;
    return bytes;
  }

  /** Publishes root N+1, signed by its own keys and `alsoSignedBy` (the previous root's keys). */
  async publishRoot(alsoSignedBy: Signer[] = [], onlySignedBy?: Signer[]) {
    const v = ++this.version.root;
    const keys: Record<string, unknown> = {};
    const roles: Record<string, unknown> = {};
    for (const [role, k] of Object.entries(this.keys)) {
      for (const s of k.signers)
        keys[s.id] = { keytype: 'ed25519', scheme: 'ed25519', keyval: { public: s.pub } };
      roles[role] = { keyids: k.signers.map((s) => s.id), threshold: k.threshold };
    }
    const signers = onlySignedBy ?? [...new Set([...alsoSignedBy, ...this.keys.root.signers])];
    return this.write(
      'root',
      { version: v, keys, roles, consistent_snapshot: true },
      signers,
      `${v}.root.json`,
    );
  }

  async addTarget(name: string, data: Buffer) {
    const hashes = { sha256: sha256(data) };
    this.files[name] = { length: data.length, hashes };
    const path = join(
      this.dir,
      'targets',
      dirname(name),
      `${hashes.sha256}.${name.split('/').pop()}`,
    );
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, data);
  }

  /** Publishes targets, snapshot and timestamp, each with the next version. */
  async publish(targetSigners = this.keys.targets.signers) {
    const t = ++this.version.targets;
    const tb = await this.write(
      'targets',
      { version: t, targets: this.files },
      targetSigners,
      `${t}.targets.json`,
    );
    await this.publishSnapshot(tb);
  }

  async publishSnapshot(targetsBytes = this.last.targets as Buffer) {
    const s = ++this.version.snapshot;
    const meta = {
      'targets.json': {
        version: this.version.targets,
        length: targetsBytes.length,
        hashes: { sha256: sha256(targetsBytes) },
      },
    };
    const sb = await this.write(
      'snapshot',
      { version: s, meta },
      this.keys.snapshot.signers,
      `${s}.snapshot.json`,
    );
    await this.publishTimestamp(sb);
  }

  async publishTimestamp(
    snapshotBytes = this.last.snapshot as Buffer,
    signers = this.keys.timestamp.signers,
  ) {
    const v = ++this.version.timestamp;
    const meta = {
      'snapshot.json': {
        version: this.version.snapshot,
        length: snapshotBytes.length,
        hashes: { sha256: sha256(snapshotBytes) },
      },
    };
    return this.write('timestamp', { version: v, meta }, signers, 'timestamp.json');
  }
}

type Handler = (res: ServerResponse) => void;

/** A static file server over `dir` that logs every request and lets a test replace a path's answer. */
async function serve(t: TestContext, dir: string) {
  const log: string[] = [];
  const overrides = new Map<string, Handler>();
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    log.push(path);
    const o = overrides.get(path);
    if (o) return o(res);
    readFile(join(dir, path)).then(
      (b) => res.end(b),
      () => ((res.statusCode = 404), res.end()),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const addr = server.address();
  const url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  return { url, log, overrides };
}

interface Setup {
  repo: TestRepo;
  http: Awaited<ReturnType<typeof serve>>;
  md: string;
  out: string;
  tmp: string;
  opts(extra?: Partial<TufClientOptions>): TufClientOptions;
  cli(args: string[], env?: NodeJS.ProcessEnv): Promise<{ status: number; stderr: string }>;
  download(names: string[], extra?: string[]): Promise<{ status: number; stderr: string }>;
}

async function setup(t: TestContext, prepare?: (repo: TestRepo) => void): Promise<Setup> {
  const { dir: tmp, cleanup } = await tempDir('ferry-tuf-');
  t.after(cleanup);
  const repo = new TestRepo(join(tmp, 'repo'));
  prepare?.(repo);
  const rootBytes = await repo.publishRoot();
  await repo.addTarget('a.txt', Buffer.from('alpha\n'));
  await repo.addTarget('dir/b.bin', Buffer.alloc(70_000, 7));
  await repo.publish();
  const http = await serve(t, repo.dir);
  const md = join(tmp, 'md');
  const out = join(tmp, 'out');
  await writeFile(join(tmp, 'root.json'), rootBytes);
  const cli = (args: string[], env: NodeJS.ProcessEnv = {}) =>
    new Promise<{ status: number; stderr: string }>((resolve) => {
      execFile(BIN, args, { env: { ...process.env, ...env } }, (err, _o, stderr) =>
        resolve({ status: err ? Number(err.code) : 0, stderr }),
      );
    });
  const base = ['--metadata-url', `${http.url}/metadata`, '--metadata-dir', md];
  const s: Setup = {
    repo,
    http,
    md,
    out,
    tmp,
    opts: (extra = {}) => ({
      metadataUrl: `${http.url}/metadata`,
      metadataDir: md,
      targetBaseUrl: `${http.url}/targets`,
      targetDir: out,
      ...extra,
    }),
    cli,
    download: (names, extra = []) =>
      cli([
        ...base,
        ...names.flatMap((n) => ['--target-name', n]),
        '--target-dir',
        out,
        '--target-base-url',
        `${http.url}/targets`,
        ...extra,
        'download',
      ]),
  };
  assert.equal((await cli(['--metadata-dir', md, 'init', join(tmp, 'root.json')])).status, 0);
  return s;
}

const refreshArgs = (s: Setup) => [
  '--metadata-url',
  `${s.http.url}/metadata`,
  '--metadata-dir',
  s.md,
  'refresh',
];
const version = async (s: Setup, role: string) =>
  (
    JSON.parse(await readFile(join(s.md, `${role}.json`), 'utf8')) as {
      signed: { version: number };
    }
  ).signed.version;

async function rejectsWith(p: Promise<unknown>, code: ErrorCode) {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isFerryError(e), `not a FerryError: ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return true;
  });
}

/** The CLI exits 1, and the library refuses with `code`, on the same metadata dir. */
async function refused(
  s: Setup,
  code: ErrorCode,
  target?: string,
  extra: Partial<TufClientOptions> = {},
) {
  const r = target ? await s.download([target]) : await s.cli(refreshArgs(s));
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`error\\[${code}\\]`));
  const client = createTufClient(s.opts(extra));
  await rejectsWith(target ? client.download(target) : client.refresh(), code);
}

describe('tuf client (tuf-js) and ferry-tuf-client', () => {
  describe('when initialised', () => {
    it('stores the trusted root as root.json without any request', async (t) => {
      const s = await setup(t);
      assert.deepEqual(await readFile(join(s.md, 'root.json')), s.repo.last.root);
      const closed = [
        '--metadata-url',
        'http://127.0.0.1:9/metadata',
        '--metadata-dir',
        join(s.tmp, 'md2'),
      ];
      assert.equal((await s.cli([...closed, 'init', join(s.tmp, 'root.json')])).status, 0);
      assert.deepEqual(s.http.log, []);
    });
    it('refuses a client with no trusted root with TUF_ROOT_MISSING', async (t) => {
      const s = await setup(t);
      assert.throws(
        () => createTufClient(s.opts({ metadataDir: join(s.tmp, 'none') })),
        (e) => isFerryError(e, 'TUF_ROOT_MISSING'),
      );
    });
  });

  describe('when the repository is good', () => {
    it('refreshes and keeps the top-level metadata under plain names', async (t) => {
      const s = await setup(t);
      assert.equal((await s.cli(refreshArgs(s))).status, 0);
      assert.deepEqual((await readdir(s.md)).sort(), [
        'root.json',
        'snapshot.json',
        'targets.json',
        'timestamp.json',
      ]);
      assert.equal(await version(s, 'timestamp'), 1);
      assert.ok(s.http.log.includes('/metadata/1.snapshot.json'), 'consistent snapshot names');
    });
    it('downloads two targets and does not fetch a verified copy again', async (t) => {
      const s = await setup(t);
      assert.equal((await s.download(['a.txt', 'dir/b.bin'])).status, 0);
      assert.equal(await readFile(join(s.out, 'a.txt'), 'utf8'), 'alpha\n');
      assert.deepEqual(await readFile(join(s.out, 'dir%2Fb.bin')), Buffer.alloc(70_000, 7));
      assert.equal((await s.download(['a.txt', 'dir/b.bin'])).status, 0);
      const gets = s.http.log.filter((p) => p.startsWith('/targets/'));
      assert.deepEqual(gets, [
        `/targets/${s.repo.files['a.txt']?.hashes.sha256}.a.txt`,
        `/targets/dir/${s.repo.files['dir/b.bin']?.hashes.sha256}.b.bin`,
      ]);
    });
    it('gives the signed entry of a target and TUF_TARGET_NOT_FOUND for an unlisted one', async (t) => {
      const s = await setup(t);
      const client = createTufClient(s.opts());
      assert.deepEqual(await client.getTargetInfo('a.txt'), {
        name: 'a.txt',
        ...s.repo.files['a.txt'],
        custom: {},
      });
      await rejectsWith(client.getTargetInfo('nope.txt'), 'TUF_TARGET_NOT_FOUND');
      assert.equal((await s.download(['nope.txt'])).status, 1);
    });
  });

  describe('when the repository rotates root keys', () => {
    it('follows 1-of-1 -> 2-of-3 -> 1-of-1 and then trusts the new keys', async (t) => {
      const s = await setup(t);
      const v1 = s.repo.keys.root.signers;
      s.repo.keys.root = { signers: [newSigner(), newSigner(), newSigner()], threshold: 2 };
      await s.repo.publishRoot(v1, [...v1, ...s.repo.keys.root.signers.slice(0, 2)]);
      const v2 = s.repo.keys.root.signers;
      s.repo.keys.root = { signers: [newSigner()], threshold: 1 };
      await s.repo.publishRoot(v2.slice(1));
      assert.equal((await s.cli(refreshArgs(s))).status, 0);
      assert.equal(await version(s, 'root'), 3);
    });
    it('refuses a root signed only by a rotated-out key (TUF_UNSIGNED)', async (t) => {
      const s = await setup(t);
      const old = s.repo.keys.root.signers;
      s.repo.keys.root = { signers: [newSigner(), newSigner(), newSigner()], threshold: 2 };
      await s.repo.publishRoot(old);
      assert.equal((await s.cli(refreshArgs(s))).status, 0);
      await s.repo.publishRoot([], old); // attacker holding the revoked key
      await refused(s, 'TUF_UNSIGNED');
      assert.equal(await version(s, 'root'), 2);
    });
    it('refuses a timestamp signed by a rotated-out timestamp key (TUF_UNSIGNED)', async (t) => {
      const s = await setup(t);
      assert.equal((await s.cli(refreshArgs(s))).status, 0);
      const old = s.repo.keys.timestamp.signers;
      s.repo.keys.timestamp = { signers: [newSigner()], threshold: 1 };
      await s.repo.publishRoot();
      await s.repo.publishTimestamp(undefined, old);
      await refused(s, 'TUF_UNSIGNED');
    });
  });

  describe('when attacked', () => {
    it('refuses a lowered timestamp version (rollback: TUF_ROLLBACK)', async (t) => {
      const s = await setup(t);
      const v1 = s.repo.last.timestamp as Buffer;
      await s.repo.publishTimestamp();
      assert.equal((await s.cli(refreshArgs(s))).status, 0);
      await writeFile(join(s.repo.dir, 'metadata', 'timestamp.json'), v1);
      await refused(s, 'TUF_ROLLBACK');
      assert.equal(await version(s, 'timestamp'), 2);
    });
    it('refuses an expired timestamp (freeze: TUF_EXPIRED)', async (t) => {
      const s = await setup(t);
      s.repo.expires.timestamp = iso(-60_000);
      await s.repo.publishTimestamp();
      await refused(s, 'TUF_EXPIRED');
    });
    it('refuses a timestamp that expired by the device clock (freeze: TUF_EXPIRED)', async (t) => {
      const s = await setup(t);
      const preload = join(s.tmp, 'clock.mjs');
      await writeFile(preload, CLOCK_PRELOAD);
      const env = {
        NODE_OPTIONS: `--import=${preload}`,
        FERRY_TEST_CLOCK_SHIFT_MS: String(2 * DAY),
      };
      const r = await s.cli(refreshArgs(s), env);
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, /error\[TUF_EXPIRED\]/);
      const RealDate = Date;
      globalThis.Date = shiftedDate(2 * DAY);
      let client;
      try {
        client = createTufClient(s.opts()); // tuf-js takes its reference time here (spec 5.1)
      } finally {
        globalThis.Date = RealDate;
      }
      await rejectsWith(client.refresh(), 'TUF_EXPIRED');
      assert.equal(
        (await s.cli(refreshArgs(s), { ...env, FERRY_TEST_CLOCK_SHIFT_MS: '0' })).status,
        0,
      );
    });
    it('refuses a target whose bytes differ from the signed hash (arbitrary software: TUF_HASH_MISMATCH)', async (t) => {
      const s = await setup(t);
      const f = s.repo.files['a.txt'];
      await writeFile(join(s.repo.dir, 'targets', `${f?.hashes.sha256}.a.txt`), 'evil!\n');
      await refused(s, 'TUF_HASH_MISMATCH', 'a.txt');
      await assert.rejects(readFile(join(s.out, 'a.txt')), { code: 'ENOENT' });
    });
    it('refuses targets metadata that snapshot does not pin (mix-and-match: TUF_HASH_MISMATCH)', async (t) => {
      const s = await setup(t);
      const v1 = s.repo.last.targets as Buffer;
      await s.repo.addTarget('a.txt', Buffer.from('newer\n'));
      await s.repo.publish();
      await writeFile(join(s.repo.dir, 'metadata', '2.targets.json'), v1);
      await refused(s, 'TUF_HASH_MISMATCH');
    });
    it('cuts a target served past its signed length (endless data: TUF_TOO_LARGE)', async (t) => {
      const s = await setup(t);
      let sent = 0;
      const total = 256 * 1024 * 1024;
      s.http.overrides.set(`/targets/${s.repo.files['a.txt']?.hashes.sha256}.a.txt`, (res) => {
        const chunk = Buffer.alloc(64 * 1024, 0x41);
        const pump = () => {
          while (sent < total && !res.destroyed) {
            sent += chunk.length;
            if (!res.write(chunk)) return void res.once('drain', pump);
          }
          res.end();
        };
        pump();
      });
      await refused(s, 'TUF_TOO_LARGE', 'a.txt');
      assert.ok(sent < total / 4, `server sent ${sent} bytes`);
      await assert.rejects(readFile(join(s.out, 'a.txt')), { code: 'ENOENT' });
    });
    it('gives up on a 1 byte/s target within the fetch timeout (slow retrieval: TUF_TIMEOUT)', async (t) => {
      const s = await setup(t);
      s.http.overrides.set(`/targets/${s.repo.files['a.txt']?.hashes.sha256}.a.txt`, (res) => {
        res.writeHead(200, { 'content-length': '6' });
        const timer = setInterval(() => res.write('a'), 1000);
        res.on('close', () => clearInterval(timer));
      });
      const start = Date.now();
      const r = await s.download(['a.txt'], ['--fetch-timeout-ms', '1500']);
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, /error\[TUF_TIMEOUT\]/);
      const client = createTufClient(s.opts({ fetchTimeoutMs: 1500 }));
      await rejectsWith(client.download('a.txt'), 'TUF_TIMEOUT');
      assert.ok(Date.now() - start < 2 * 1500 + 4000, `took ${Date.now() - start} ms`);
    });
    it('refuses targets signed by 1 of a threshold-2 role (TUF_UNSIGNED)', async (t) => {
      const s = await setup(t, (repo) => {
        repo.keys.targets = { signers: [newSigner(), newSigner()], threshold: 2 };
      });
      await s.repo.publish(s.repo.keys.targets.signers.slice(0, 1));
      await refused(s, 'TUF_UNSIGNED');
      await s.repo.publish();
      assert.equal((await s.cli(refreshArgs(s))).status, 0);
    });
  });

  describe('when served by Debian nginx', () => {
    it('refreshes, downloads and reuses a verified copy', needs('nginx'), async (t) => {
      const s = await setup(t);
      const nginx = await startNginx(s.repo.dir);
      t.after(() => nginx.stop());
      const args = (name: string) => [
        '--metadata-url',
        `${nginx.url}/metadata`,
        '--metadata-dir',
        s.md,
        '--target-name',
        name,
        '--target-dir',
        s.out,
        '--target-base-url',
        `${nginx.url}/targets`,
        'download',
      ];
      assert.equal((await s.cli(args('dir/b.bin'))).status, 0);
      assert.equal((await s.cli(args('dir/b.bin'))).status, 0);
      const gets = (await nginx.accessLog()).filter((l) => l.startsWith('GET /targets/'));
      assert.equal(gets.length, 1, gets.join('\n'));
      assert.deepEqual(await readFile(join(s.out, 'dir%2Fb.bin')), Buffer.alloc(70_000, 7));
    });
  });
});

// The device clock moved: a child process whose Date runs FERRY_TEST_CLOCK_SHIFT_MS ahead.
const CLOCK_PRELOAD = `const shift = Number(process.env.FERRY_TEST_CLOCK_SHIFT_MS ?? 0);
const Real = Date;
globalThis.Date = class extends Real {
  constructor(...a) { if (a.length === 0) super(Real.now() + shift); else super(...a); }
  static now() { return Real.now() + shift; }
};
`;

function shiftedDate(shift: number): DateConstructor {
  const Real = Date;
  return class extends Real {
    constructor(...a: [] | [string | number | Date]) {
      if (a.length === 0) super(Real.now() + shift);
      else super(a[0]);
    }
    static override now() {
      return Real.now() + shift;
    }
  } as DateConstructor;
}
