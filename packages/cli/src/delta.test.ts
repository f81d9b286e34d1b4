import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { Agent, type AgentEvent, type FileBootloader } from '@ferry/agent';
import { buildImage } from '@ferry/builder';
import { generateKeyPair, loadKeyring, parsePrivateKey, type PrivateKey } from '@ferry/core';
import { gc, initRepo, publishBundle, type SigningKeys } from '@ferry/repo';
import {
  have,
  imageLikeBytes,
  makeDevice,
  needs,
  startNginx,
  type DeviceFixture,
  type Nginx,
} from '@ferry/testing';
import { deltaPackPath, type DeltaPackInfo } from '@ferry/repo';
import { repoDelta } from './delta-commands.ts';
import { Output } from './output.ts';

const caps = needs('sfdisk', 'nginx', 'root');
const newKey = (): PrivateKey => parsePrivateKey(generateKeyPair().privateKeyPem);
type InstallDelta = Extract<AgentEvent, { id: 'install.delta' }>;

let work: DeviceFixture;
let nginx: Nginx;
let repo: string;
const images: Record<string, Buffer> = {};
const bundles: Record<string, string> = {};
/** Chunk-index SHA-256 of each release's image, from its signed manifest. */
const indexOf: Record<string, string> = {};

/** Deterministic text-like bytes: words of a fixed vocabulary, as in real files. */
function text(bytes: number, seed: number): string {
  const vocab = Array.from({ length: 400 }, (_, i) => `w${((i * 7919) % 10007).toString(36)}`);
  let x = seed >>> 0 || 1;
  const out: string[] = [];
  for (let n = 0; n < bytes;) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const w = vocab[(x >>> 0) % vocab.length]!;
    out.push((x & 15) === 0 ? `${w}\n` : `${w} `);
    n += w.length + 1;
  }
  return out.join('');
}

/** Trees of a small system: v2 edits some files and adds two; v3 replaces half of them. */
function tree(version: 'v1' | 'v2' | 'v3'): Record<string, string> {
  const files: Record<string, string> = {};
  for (let i = 0; i < 40; i++) files[`usr/lib/pkg${i}/data.txt`] = text(60_000 + i * 1000, i + 1);
  if (version === 'v2') {
    for (const i of [3, 11, 25, 37])
      files[`usr/lib/pkg${i}/data.txt`] = files[`usr/lib/pkg${i}/data.txt`]!.replace(
        /w[0-9a-z]+ w[0-9a-z]+ /g,
        (m, at: number) => (at % 9000 < 20 ? 'patched release two ' : m),
      );
    files['usr/lib/new/one.txt'] = text(6000, 901);
    files['etc/version'] = 'v2\n';
  }
  if (version === 'v3')
    for (let i = 0; i < 20; i++) files[`usr/lib/pkg${i}/data.txt`] = text(70_000, 500 + i);
  return files;
}

/** A squashfs --compression none image of the tree (the builder's), else raw image bytes. */
async function makeImage(version: 'v1' | 'v2' | 'v3', dir: string): Promise<Buffer> {
  if (!have('mksquashfs')) {
    const img = imageLikeBytes(3 << 20, 7);
    if (version === 'v2') for (const at of [100_000, 900_000, 2_000_000]) img.write('v2', at);
    if (version === 'v3') imageLikeBytes(1 << 20, 8).copy(img, 1 << 20);
    return img;
  }
  const root = join(dir, `tree-${version}`);
  for (const [path, content] of Object.entries(tree(version))) {
    await mkdir(join(root, path, '..'), { recursive: true });
    await writeFile(join(root, path), content);
  }
  const out = join(dir, `${version}.sqfs`);
  await buildImage({
    from: root,
    out,
    format: 'squashfs',
    compression: 'none',
    sourceDateEpoch: 1,
  });
  return readFile(out);
}

/** A device following the repository, booted from B holding 1.0.0. */
async function device(): Promise<DeviceFixture> {
  const d = await makeDevice({
    slotMiB: 8,
    extraToml: `[update]\nrepository = "${nginx.url}/repo"\n`,
  });
  await d.trust(work, repo);
  await (await Agent.open({ root: d.root })).install(bundles['1.0.0']!);
  assert.equal(
    await ((await Agent.open({ root: d.root })).bootloader as FileBootloader).boot(),
    'B',
  );
  await d.boot('B');
  await (await Agent.open({ root: d.root })).mark('booted', 'good');
  return d;
}

/** Runs `ferry repo delta` in-process and returns its JSON result. */
async function repoDeltaCli(values: Record<string, string | string[]>) {
  const sink = new PassThrough();
  let json = '';
  sink.on('data', (b: Buffer) => (json += b.toString()));
  await repoDelta.run({
    values: { ...values, json: true },
    positionals: [repo],
    out: new Output(true, sink),
  });
  return JSON.parse(json) as { packs: DeltaPackInfo[] };
}

/** Updates the device; returns the result, its delta events and nginx's lines for it. */
async function update(d: DeviceFixture) {
  const from = (await nginx.accessLog()).length;
  const events: InstallDelta[] = [];
  const r = await (
    await Agent.open({ root: d.root })
  ).update({
    onEvent: (e) => void (e.id === 'install.delta' && events.push(e)),
  });
  const log = (await nginx.accessLog()).slice(from);
  const bytes = (f: string) =>
    log.filter((l) => l.includes(f)).reduce((a, l) => a + Number(l.split(' ')[3]), 0);
  return {
    installed: r.installed!,
    events,
    packLines: log.filter((l) => l.includes(' /repo/deltas/') && l.includes('.fdp')),
    indexDeltaLines: log.filter((l) => l.includes(' /repo/deltas/') && l.includes('.cidx.zst')),
    indexTargetGets: log.filter((l) => l.includes(' /repo/targets/') && l.includes('.cidx')).length,
    chunkGets: log.filter((l) => l.includes(' /repo/chunks/')).length,
    downloaded: bytes(' /repo/chunks/') + bytes(' /repo/deltas/'),
  };
}

/** The target slot (A) holds exactly the signed 1.2.0 image. */
async function assertInstalled(d: DeviceFixture, r: Awaited<ReturnType<typeof update>>) {
  assert.equal(r.installed.version, '1.2.0');
  const img = images['1.2.0']!;
  const fh = await open(d.disk, 'r');
  const buf = Buffer.alloc(img.length);
  await fh.read(buf, 0, img.length, d.partitions.rootA!.offset);
  await fh.close();
  assert.equal(sha(buf), sha(img));
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const packFile = (from: string, to: string) =>
  join(repo, deltaPackPath(indexOf[from]!, indexOf[to]!));

before(async () => {
  if (caps.skip) return;
  work = await makeDevice({ slotMiB: 8 });
  repo = join(work.root, 'srv', 'repo');
  await mkdir(repo, { recursive: true });
  const keys = { root: [newKey()], targets: [newKey()], snapshot: newKey(), timestamp: newKey() };
  const signing: SigningKeys = {
    targets: keys.targets,
    snapshot: keys.snapshot,
    timestamp: keys.timestamp,
  };
  await initRepo(repo, { keys });
  const v1 = await makeImage('v1', work.root);
  Object.assign(images, {
    '1.0.0': v1,
    // 1.1.0 differs from 1.0.0 by a few bytes: its pack exists, 1.0.0's does not (yet).
    '1.1.0': Buffer.concat([v1.subarray(0, v1.length - 4096), Buffer.alloc(4096, 1)]),
    '1.2.0': await makeImage('v2', work.root),
    '2.0.0-beta.1': await makeImage('v3', work.root),
  });
  const keyring = await loadKeyring(join(work.root, 'etc/ferry/keyring'));
  let counter = 0;
  for (const [version, img] of Object.entries(images)) {
    const path = join(work.root, `${version}.img`);
    await writeFile(path, img);
    bundles[version] = await work.bundle(path, { version, counter: ++counter });
    const channel = version.includes('beta') ? 'beta' : 'stable';
    await publishBundle(repo, bundles[version], { channel, keyring, keys: signing });
  }
  const beta = (await repoDeltaCli({ channel: 'beta', from: ['1.0.0'] })).packs[0]!;
  indexOf['1.0.0'] = beta.baseIndex;
  indexOf['2.0.0-beta.1'] = beta.targetIndex;
  const stable = await repoDeltaCli({ channel: 'stable' }); // --last 1: from 1.1.0 only
  assert.deepEqual(
    stable.packs.map((p) => p.from),
    ['1.1.0'],
  );
  indexOf['1.2.0'] = stable.packs[0]!.targetIndex;
  nginx = await startNginx(join(work.root, 'srv'));
});
after(async () => {
  await nginx?.stop();
  await work?.cleanup();
});

describe('delta packs on the update path', () => {
  describe('when no pack exists for the base the device holds', () => {
    it('gets a 404 and installs from plain chunks', caps, async () => {
      const d = await device();
      try {
        const r = await update(d);
        assert.ok(
          r.packLines.length > 0 && r.packLines.every((l) => / 404 /.test(l)),
          r.packLines.join('\n'),
        );
        assert.equal(r.events[0]?.result, 'unavailable');
        assert.equal(r.events[0]?.code, 'FETCH_FAILED');
        assert.ok(r.chunkGets > 0);
        await assertInstalled(d, r);
      } finally {
        await d.cleanup();
      }
    });
  });

  describe('when repo delta made a pack from the device base', () => {
    it('fetches the pack, few or no chunks, far fewer bytes than plain chunks', caps, async (t) => {
      const d = await device();
      const plainDevice = await device();
      const file = packFile('1.0.0', '1.2.0');
      try {
        const made = await repoDeltaCli({ channel: 'stable', from: ['1.0.0'] });
        assert.equal(made.packs[0]?.created, true);
        assert.equal(join(repo, made.packs[0].path), file);
        // The same pair without the pack: the plain-chunk path, measured on the same server.
        await rename(file, `${file}.off`);
        const plain = await update(plainDevice).finally(() => rename(`${file}.off`, file));
        const r = await update(d);
        t.diagnostic(
          `pack path ${r.downloaded} B (${r.chunkGets} chunks), plain ${plain.downloaded} B (${plain.chunkGets} chunks), image ${images['1.2.0']!.length} B`,
        );
        assert.equal(r.events.at(-1)?.result, 'applied');
        assert.ok(r.events.at(-1)!.chunks > 0);
        assert.ok(
          r.packLines.every((l) => / 206 /.test(l)),
          r.packLines.join('\n'),
        );
        assert.ok(r.chunkGets <= 1, `${r.chunkGets} chunk requests`);
        // The chunk index came as a delta against the base index, not whole through TUF.
        assert.equal(r.indexDeltaLines.length, 1, r.indexDeltaLines.join('\n'));
        assert.match(r.indexDeltaLines[0]!, / 200 /);
        assert.equal(r.indexTargetGets, 0);
        assert.equal(made.packs[0].indexDeltaBytes! > 0, true);
        assert.equal(r.installed.deltaBytes, r.events.at(-1)!.bytes);
        assert.ok(
          r.downloaded * 3 < plain.downloaded,
          `pack path ${r.downloaded} bytes, plain chunks ${plain.downloaded}`,
        );
        await assertInstalled(d, r);
        await assertInstalled(plainDevice, plain);
      } finally {
        await d.cleanup();
        await plainDevice.cleanup();
      }
    });
  });

  for (const [what, spoil, codes] of [
    [
      'a byte of the pack is flipped',
      async (file: string) => {
        const b = await readFile(file);
        b[b.length - 20]! ^= 0xff;
        await writeFile(file, b);
      },
      ['DELTA_INVALID', 'CHUNK_HASH_MISMATCH'],
    ],
    [
      'the pack is one for another target',
      (file: string) => copyFile(packFile('1.0.0', '2.0.0-beta.1'), file),
      ['DELTA_UNEXPECTED_CHUNK'],
    ],
  ] as const)
    describe(`when ${what}`, () => {
      it('refuses it with a stable code and completes from plain chunks', caps, async (t) => {
        const d = await device();
        const file = packFile('1.0.0', '1.2.0');
        await repoDeltaCli({ channel: 'stable', from: ['1.0.0'] });
        await copyFile(file, `${file}.good`);
        try {
          await spoil(file);
          const r = await update(d);
          t.diagnostic(
            `${r.events[0]?.code}: ${r.events[0]?.bytes} B, ${r.events[0]?.chunks} chunks`,
          );
          assert.equal(r.events[0]?.result, 'refused');
          assert.ok((codes as readonly string[]).includes(r.events[0].code!), r.events[0].code);
          assert.ok(r.chunkGets > 0);
          await assertInstalled(d, r);
        } finally {
          await rename(`${file}.good`, file);
          await d.cleanup();
        }
      });
    });

  describe('when repo gc runs', () => {
    it('keeps every pack whose target is published', caps, async () => {
      const stray = join(repo, deltaPackPath('a'.repeat(64), 'b'.repeat(64)));
      await mkdir(join(stray, '..'), { recursive: true });
      await writeFile(stray, 'x');
      const r = await gc(repo);
      assert.equal(r.deltaPacks.deleted, 1);
      assert.ok(r.deltaPacks.kept >= 3);
      await readFile(packFile('1.0.0', '1.2.0'));
      await assert.rejects(readFile(stray));
      await rm(join(stray, '..'), { recursive: true, force: true });
    });
  });
});
