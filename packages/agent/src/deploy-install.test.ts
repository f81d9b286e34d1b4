/** Component tests of installing releases as deployments, on a fake system root in a temp dir. */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { zstdCompressSync } from 'node:zlib';
import {
  encodeTree,
  isFerryError,
  parseTree,
  scanTree,
  treeDigest,
  type TreeListing,
} from '@ferry/core';
import { needs, tempDir, treeManifest } from '@ferry/testing';
import { parseConfig } from './config.ts';
import { DeviceDeployments } from './deploy-device.ts';
import { listBootEntries } from './deploy-boot.ts';
import { readGrubDeployments } from './deploy-boot-grub.ts';
import { deployBootFor } from './deploy-bootloader.ts';
import { deployBootCheck } from './deploy-boot-check.ts';
import { RELEASE_OBJECTS, deployToml, makeReleaseTree } from './deploy-fixture.ts';
import { HttpTreeSource } from './deploy-http.ts';
import { deployRelease, type DeployEvent, type DeployReleaseOptions } from './deploy-install.ts';
import { objectEntries } from './deploy-objects.ts';
import { DirectoryTreeSource, type TreeSource } from './deploy-source.ts';
import { DeployStore } from './deploy-store.ts';
import { HttpFetcher } from './http-fetch.ts';

const caps = needs('setfattr', 'mknod');
let t: { dir: string; cleanup: () => Promise<void> };
const trees: TreeListing[] = [];
const bytesOf: Buffer[] = [];
const srcDir = (n: number) => join(t.dir, `rootfs-v${n}`);

before(async () => {
  if (caps.skip) return;
  t = await tempDir('ferry-deploy-install-');
  for (const n of [1, 2, 3, 4]) {
    await makeReleaseTree(srcDir(n), n);
    // A new default file from release 2 on: it must arrive in the merged /etc.
    if (n > 1) await writeFile(join(srcDir(n), 'etc/motd'), `welcome to ${n}\n`);
    trees[n] = await scanTree(srcDir(n));
    bytesOf[n] = encodeTree(trees[n]);
  }
});
after(async () => {
  if (!t) return;
  for (const n of [1, 2, 3, 4, 11, 12, 13])
    await chmod(join(srcDir(n), 'var/empty'), 0o755).catch(() => {});
  await t.cleanup();
});

/** A manifest as the publishing side signs it (signature checks are the caller's, not tested here). */
function manifest(n: number, opts: { counter?: number; tree?: boolean; compatible?: string } = {}) {
  return treeManifest(bytesOf[n]!, trees[n]!.entries.length, {
    version: `${n}.0.0`,
    counter: n,
    ...opts,
  });
}

interface Fake {
  base: string;
  store: DeployStore;
  events: DeployEvent[];
}

async function fake(name: string): Promise<Fake> {
  const base = join(t.dir, name);
  return { base, store: await DeployStore.open(join(base, 'deploy')), events: [] };
}

function deploy(f: Fake, n: number, extra: Partial<DeployReleaseOptions> = {}) {
  return deployRelease({
    store: f.store,
    manifest: manifest(n),
    image: 'rootfs',
    source: new DirectoryTreeSource(srcDir(n)),
    compatible: 'board-x',
    conflictDir: join(f.base, 'etc-conflicts'),
    onEvent: (e) => f.events.push(e),
    ...extra,
  });
}

async function objectCount(f: Fake): Promise<number> {
  const all = await readdir(join(f.store.dir, 'objects'), { recursive: true, withFileTypes: true });
  return all.filter((d) => d.isFile() && !d.parentPath.endsWith('/tmp')).length;
}

const etcOf = (f: Fake, id: string, p: string) => readFile(join(f.store.dir, 'etc', id, p), 'utf8');
const defaultId = (f: Fake) => f.store.list().find((d) => d.isDefault)?.id;
const code = (c: string) => (e: unknown) => isFerryError(e) && e.code === c;

describe('deployRelease', () => {
  describe('when the store is empty (first deploy)', () => {
    it(
      'imports every object, copies the defaults to its /etc and makes it default',
      caps,
      async () => {
        const f = await fake('first');
        const r = await deploy(f, 1);
        assert.equal(r.fetched.objects, RELEASE_OBJECTS);
        assert.equal(defaultId(f), r.deployment);
        assert.equal(r.etcFrom, undefined);
        assert.equal(await etcOf(f, r.deployment, 'os-release'), 'VERSION_ID=1\n');
        assert.deepEqual(
          f.events.filter((e) => e.id !== 'deploy.progress').map((e) => e.id),
          [
            'deploy.started',
            'deploy.planned',
            'deploy.checked-out',
            'deploy.etc-merged',
            'deploy.committed',
          ],
        );
        const last = f.events.filter((e) => e.id === 'deploy.progress').at(-1);
        assert.deepEqual(last && [last.done, last.total], [RELEASE_OBJECTS, RELEASE_OBJECTS]);
      },
    );
  });

  describe('when a second release shares most files with the booted one', () => {
    it('imports only the missing objects and carries local /etc changes over', caps, async () => {
      const f = await fake('second');
      const d1 = (await deploy(f, 1)).deployment;
      await writeFile(join(f.store.dir, 'etc', d1, 'local.conf'), 'mine\n');
      await writeFile(join(f.store.dir, 'etc', d1, 'empty.conf'), 'tuned=1\n');
      const r = await deploy(f, 2, { booted: d1 });
      // release 2 changes os-release and libapp.so, adds usr/bin/new-2 and etc/motd
      assert.equal(r.fetched.objects, 4);
      assert.equal(r.etcFrom, d1);
      assert.equal(await etcOf(f, r.deployment, 'local.conf'), 'mine\n');
      assert.equal(await etcOf(f, r.deployment, 'empty.conf'), 'tuned=1\n');
      assert.equal(await etcOf(f, r.deployment, 'os-release'), 'VERSION_ID=2\n');
      assert.equal(await etcOf(f, r.deployment, 'motd'), 'welcome to 2\n');
      const pristine = join(f.store.deploymentPath(r.deployment), 'etc/empty.conf');
      assert.equal(await readFile(pristine, 'utf8'), '', 'the checkout is never written');
      const s = f.store.list();
      assert.deepEqual([defaultId(f), s.find((d) => d.isPrevious)?.id], [r.deployment, d1]);
    });
  });

  describe('when the listing is not the signed one', () => {
    it('refuses before any object is written and keeps the default', caps, async () => {
      const f = await fake('tampered-listing');
      const d1 = (await deploy(f, 1)).deployment;
      const before = await objectCount(f);
      const forged = parseTree(bytesOf[2]!);
      forged.entries.find((e) => e.path === 'usr/bin/tool')!.mode = 0o4755;
      const source: TreeSource = {
        listing: () => Promise.resolve(encodeTree(forged)),
        objects: { open: () => Promise.reject(new Error('must not be asked')) },
      };
      await assert.rejects(deploy(f, 2, { source }), code('DEPLOY_TREE_MISMATCH'));
      assert.equal(await objectCount(f), before);
      assert.deepEqual([defaultId(f), f.store.list().length], [d1, 1]);
    });
    it('refuses a manifest that signs no tree', caps, async () => {
      const f = await fake('unsigned');
      await assert.rejects(
        deploy(f, 1, { manifest: manifest(1, { tree: false }) }),
        code('DEPLOY_TREE_UNSIGNED'),
      );
      assert.equal(await objectCount(f), 0);
    });
  });

  describe('when the source serves wrong bytes for an object', () => {
    it('refuses with DEPLOY_OBJECT_MISMATCH and keeps the default', caps, async () => {
      const f = await fake('tampered-object');
      const d1 = (await deploy(f, 1)).deployment;
      const real = new DirectoryTreeSource(srcDir(2));
      const source: TreeSource = {
        listing: () => real.listing(),
        objects: {
          open: async (id, e) =>
            e.path === 'usr/lib/libapp.so'
              ? Readable.from([Buffer.alloc(e.size!, 7)])
              : real.objects.open(id, e),
        },
      };
      await assert.rejects(deploy(f, 2, { source }), code('DEPLOY_OBJECT_MISMATCH'));
      assert.deepEqual([defaultId(f), f.store.list().length], [d1, 1]);
      assert.deepEqual(await readdir(join(f.store.dir, 'etc')), [d1]);
    });
  });

  describe('when the release is older or for another device', () => {
    it(
      'refuses a lower release counter than the default and a wrong compatible',
      caps,
      async () => {
        const f = await fake('downgrade');
        const d2 = (await deploy(f, 2)).deployment;
        await assert.rejects(deploy(f, 1), code('BUNDLE_DOWNGRADE'));
        await assert.rejects(deploy(f, 3, { compatible: 'board-y' }), code('BUNDLE_INCOMPATIBLE'));
        assert.deepEqual([defaultId(f), f.store.list().length], [d2, 1]);
        const r = await deploy(f, 1, { allowDowngrade: true });
        assert.equal(defaultId(f), r.deployment);
      },
    );
  });

  describe('when making the new /etc fails after the checkout', () => {
    it('removes the new deployment and keeps the default', caps, async () => {
      const f = await fake('etc-missing');
      const d1 = (await deploy(f, 1)).deployment;
      await rm(join(f.store.dir, 'etc', d1), { recursive: true });
      await assert.rejects(deploy(f, 2, { booted: d1 }), code('DEPLOY_ETC_MISSING'));
      assert.deepEqual(
        f.store.list().map((d) => d.id),
        [d1],
      );
      assert.equal(defaultId(f), d1);
    });
  });
});

describe('DeviceDeployments', () => {
  async function device(name: string, keep: number) {
    const toml = deployToml([`keep = ${keep}`], [`data-directory = "/${name}"`]);
    const config = parseConfig(toml, { root: t.dir });
    const dev = await DeviceDeployments.open(config);
    const f: Fake = { base: join(t.dir, name), store: dev.store, events: [] };
    const run = (n: number) => deploy(f, n, dev.deployOptions());
    return { dev, f, run };
  }

  describe('when rolling back', () => {
    it('makes the previous default the default again, and back', caps, async () => {
      const { dev, f, run } = await device('rollback', 3);
      const d1 = (await run(1)).deployment;
      const d2 = (await run(2)).deployment;
      assert.deepEqual(await dev.rollback(), { from: d2, to: d1 });
      assert.equal(defaultId(f), d1);
      await dev.rollback();
      assert.equal(defaultId(f), d2);
      await assert.rejects(dev.rollback('9-000000000000'), code('DEPLOY_NOT_FOUND'));
    });
  });

  describe('when more deployments exist than [deploy] keep', () => {
    it('prunes the oldest with their /etc and deletes their objects', caps, async () => {
      const { dev, f, run } = await device('prune', 2);
      const ids = [];
      for (const n of [1, 2, 3]) ids.push((await run(n)).deployment);
      assert.deepEqual(
        f.store.list().map((d) => d.id),
        ids.slice(1),
      );
      assert.deepEqual((await readdir(join(f.store.dir, 'etc'))).sort(), ids.slice(1).sort());
      assert.deepEqual((await readdir(dev.config.deploy.etcConflicts)).sort(), ids.slice(1).sort());
      // os-release and libapp.so of release 1 are in no kept tree
      assert.equal((await f.store.missingObjects(trees[1]!)).length, 2);
      const s = await dev.status();
      assert.deepEqual([s.default, s.previous, s.deployments.length], [ids[2], ids[1], 2]);
    });
  });

  describe('when the live /etc has local changes', () => {
    it('lists them against the defaults of the running deployment', caps, async () => {
      const { dev, f, run } = await device('etc-diff', 3);
      const d1 = (await run(1)).deployment;
      await run(2);
      // The running deployment comes from the kernel command line the boot entry wrote.
      await mkdir(join(t.dir, 'proc'), { recursive: true });
      await writeFile(join(t.dir, 'proc/cmdline'), `root=/dev/vda3 ferry.deployment=${d1} quiet\n`);
      const reopened = await DeviceDeployments.open(dev.config);
      await rm(join(t.dir, 'proc'), { recursive: true });
      assert.equal(reopened.current()?.id, d1);
      await writeFile(join(f.store.dir, 'etc', d1, 'hostname'), 'gw-17\n');
      const r = await reopened.etcDiff();
      assert.equal(r.deployment, d1);
      assert.deepEqual(
        r.changes.map((c) => [c.path, c.kind]),
        [['hostname', 'modified']],
      );
    });
  });
});

describe('HttpTreeSource', () => {
  let repo: string;
  let server: http.Server;
  let url: string;
  const served: string[] = [];
  let inflight = 0;
  let maxInflight = 0;

  /** Writes trees/<digest>.tree.zst and objects/<aa>/<rest>.zst of release `n`, as a repository holds them. */
  async function publish(n: number): Promise<void> {
    const tree = join(repo, 'trees', `${treeDigest(bytesOf[n]!)}.tree.zst`);
    await mkdir(join(repo, 'trees'), { recursive: true });
    await writeFile(tree, zstdCompressSync(bytesOf[n]!));
    for (const [id, e] of objectEntries(trees[n]!)) {
      await mkdir(join(repo, 'objects', id.slice(0, 2)), { recursive: true });
      await writeFile(
        join(repo, 'objects', id.slice(0, 2), `${id.slice(2)}.zst`),
        zstdCompressSync(await readFile(join(srcDir(n), e.path))),
      );
    }
  }

  before(async () => {
    if (caps.skip) return;
    repo = join(t.dir, 'repo');
    for (const n of [1, 2, 3]) await publish(n);
    server = http.createServer((req, res) => {
      served.push(req.url!);
      inflight++;
      maxInflight = Math.max(maxInflight, inflight);
      // A little latency, so that fetching ahead shows as overlapping requests.
      setTimeout(() => {
        inflight--;
        readFile(join(repo, decodeURIComponent(req.url!.slice(1)).replace(/\.\./g, '')))
          .then((b) => res.writeHead(200, { 'content-length': b.length }).end(b))
          .catch(() => res.writeHead(404).end());
      }, 15);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => server?.close());

  const source = () =>
    new HttpTreeSource(
      url,
      new HttpFetcher({ parallel: 4, timeoutMs: 10_000, minRate: 0, bandwidth: 0 }),
      { parallel: 4 },
    );

  describe('when deploying from a repository over HTTP', () => {
    it('fetches the listing and, the second time, only the missing objects', caps, async () => {
      const f = await fake('http');
      const s1 = source();
      await deploy(f, 1, { source: s1 }).finally(() => s1.close());
      const objects = (l: string[]) => l.filter((u) => u.startsWith('/objects/')).length;
      assert.equal(objects(served), RELEASE_OBJECTS);
      assert.equal(served.filter((u) => u.startsWith('/trees/')).length, 1);
      assert.ok(maxInflight > 1, `objects fetched one at a time (max ${maxInflight} in flight)`);
      served.length = 0;
      const s2 = source();
      const r = await deploy(f, 2, { source: s2 }).finally(() => s2.close());
      assert.equal(objects(served), 4);
      assert.equal(await etcOf(f, r.deployment, 'motd'), 'welcome to 2\n');
    });
    it('refuses an object whose frame decompresses to other bytes', caps, async () => {
      const f = await fake('http-bad');
      const victim = trees[3]!.entries.find((e) => e.path === 'usr/lib/libapp.so')!.object!;
      const file = join(repo, 'objects', victim.slice(0, 2), `${victim.slice(2)}.zst`);
      await writeFile(file, zstdCompressSync(Buffer.alloc(70_000, 1)));
      const s = source();
      await assert.rejects(
        deploy(f, 3, { source: s }).finally(() => s.close()),
        code('DEPLOY_OBJECT_MISMATCH'),
      );
      await writeFile(file, zstdCompressSync(Buffer.alloc(10_000_000, 1)));
      const s2 = source();
      await assert.rejects(
        deploy(f, 3, { source: s2 }).finally(() => s2.close()),
        code('DEPLOY_OBJECT_MISMATCH'),
      );
      assert.equal(f.store.list().length, 0);
    });
  });

  describe('when the device holds a base listing', () => {
    const [d1, d2] = [() => treeDigest(bytesOf[1]!), () => treeDigest(bytesOf[2]!)];
    const deltaPath = () => join(repo, 'trees', `${d2()}.from-${d1()}.zst`);
    const withBase = () =>
      new HttpTreeSource(
        url,
        new HttpFetcher({ parallel: 4, timeoutMs: 10_000, minRate: 0, bandwidth: 0 }),
        { parallel: 4, baseListing: { sha256: d1(), bytes: bytesOf[1]! } },
      );
    const tree2 = () => ({ sha256: d2(), size: bytesOf[2]!.length, entries: 0 });

    it('takes the listing as a delta from it', caps, async () => {
      await writeFile(deltaPath(), zstdCompressSync(bytesOf[2]!, { dictionary: bytesOf[1]! }));
      const s = withBase();
      served.length = 0;
      const bytes = await s.listing(tree2()).finally(() => s.close());
      assert.equal(treeDigest(bytes), d2());
      assert.equal(s.listingVia, 'delta');
      assert.deepEqual(served, [`/trees/${d2()}.from-${d1()}.zst`]);
    });
    it('fetches it whole when the delta is not the signed listing', caps, async () => {
      // A delta of another listing (release 3) under release 2's name.
      await writeFile(deltaPath(), zstdCompressSync(bytesOf[3]!, { dictionary: bytesOf[1]! }));
      const s = withBase();
      const bytes = await s.listing(tree2()).finally(() => s.close());
      assert.equal(treeDigest(bytes), d2());
      assert.equal(s.listingVia, 'full');
    });
    it('fetches it whole when there is no delta for the pair', caps, async () => {
      await rm(deltaPath(), { force: true });
      const s = withBase();
      await s.listing(tree2()).finally(() => s.close());
      assert.equal(s.listingVia, 'full');
    });
  });
});

describe('deployRelease with a boot side', () => {
  /** Releases 11..13: the fixture tree plus a Debian-layout kernel and initramfs. */
  before(async () => {
    if (caps.skip) return;
    for (const n of [11, 12, 13]) {
      await makeReleaseTree(srcDir(n), n);
      await mkdir(join(srcDir(n), 'boot'));
      await writeFile(join(srcDir(n), 'boot/vmlinuz-6.1.0-ferry'), `kernel ${n >= 12 ? 2 : 1}\n`);
      await writeFile(join(srcDir(n), 'boot/initrd.img-6.1.0-ferry'), `initrd ${n}\n`);
      trees[n] = await scanTree(srcDir(n));
      bytesOf[n] = encodeTree(trees[n]);
    }
  });

  const bootConfig = (f: Fake, boot: 'systemd-boot' | 'grub') =>
    parseConfig(
      deployToml([
        `boot = "${boot}"`,
        'boot-dir = "/boot"',
        'kernel-args = "console=ttyS0 panic=5"',
      ]),
      { root: f.base },
    ).deploy;

  it(
    'on systemd-boot: the new entry is on trial and ranks first, mark-good blesses it, pruning removes entries',
    caps,
    async () => {
      const f = await fake('boot-sdb');
      const c = bootConfig(f, 'systemd-boot');
      const boot = deployBootFor(c)!;
      const opts = { boot, bootAttempts: 2, keep: 2 };
      const d1 = (await deploy(f, 11, opts)).deployment;
      await boot.markGood(d1);
      const d2 = (await deploy(f, 12, opts)).deployment;
      let entries = await listBootEntries(c.bootDir);
      assert.deepEqual(
        entries.map((e) => [e.id, e.left]),
        [
          [d2, 2],
          [d1, undefined],
        ],
      );
      // The commit wrote the rank: without it both would rank 0 and only the id would order them.
      assert.ok(entries[0]!.rank > entries[1]!.rank);
      assert.match(entries[0]!.options, new RegExp(`ferry\\.deployment=${d2} console=ttyS0`));
      assert.equal(
        f.events.some((e) => e.id === 'deploy.boot-entry'),
        true,
      );
      await boot.markGood(d2);
      const d3 = (await deploy(f, 13, opts)).deployment;
      entries = await listBootEntries(c.bootDir);
      // keep = 2: d1, the oldest, is pruned and so is its entry; d2 stays as the previous one.
      assert.equal(entries.length, f.store.list().length);
      assert.equal(entries[0]!.id, d3);
      assert.equal(
        entries.some((e) => e.id === d1),
        false,
      );
    },
  );

  it(
    'on GRUB: grubenv names the new default on trial and the old one as previous',
    caps,
    async () => {
      const f = await fake('boot-grub');
      const c = bootConfig(f, 'grub');
      const boot = deployBootFor(c)!;
      const d1 = (await deploy(f, 11, { boot })).deployment;
      const d2 = (await deploy(f, 12, { boot, bootAttempts: 4 })).deployment;
      const g = await readGrubDeployments(c.grubEnv);
      assert.equal(g.default, d2);
      assert.equal(g.previous, d1);
      assert.equal(g.left.get(d2), 4);
      const cfg = await readFile(join(c.bootDir, 'grub/ferry-deployments.cfg'), 'utf8');
      assert.match(cfg, new RegExp(`ferry\\.deployment=${d2}`));
      await boot.markGood(d2);
      assert.equal((await readGrubDeployments(c.grubEnv)).left.has(d2), false);
    },
  );

  it('refuses a release without a kernel before the default changes', caps, async () => {
    const f = await fake('boot-nokernel');
    const c = bootConfig(f, 'systemd-boot');
    const boot = deployBootFor(c)!;
    const d11 = (await deploy(f, 11, { boot })).deployment;
    await assert.rejects(deploy(f, 2, { boot, allowDowngrade: true }), code('DEPLOY_NO_KERNEL'));
    assert.equal(defaultId(f), d11);
    assert.deepEqual(
      (await listBootEntries(c.bootDir)).map((e) => e.id),
      [d11],
    );
  });
});

describe('deployBootCheck', () => {
  const defaultOf = (dev: DeviceDeployments) => dev.store.list().find((d) => d.isDefault)?.id;
  before(() => {
    if (caps.skip) return;
    for (const n of [11, 12])
      if (!trees[n]) throw new Error('the boot-side releases are built by the suite above');
  });

  /** A device booting deployments with systemd-boot, its health check passing or not. */
  async function bootDevice(name: string, healthy: boolean) {
    const base = join(t.dir, name);
    await mkdir(join(base, 'etc/ferry/health.d'), { recursive: true });
    await writeFile(
      join(base, 'etc/ferry/health.d/10-app'),
      `#!/bin/sh\nexit ${healthy ? 0 : 1}\n`,
      {
        mode: 0o755,
      },
    );
    const toml = deployToml(['boot = "systemd-boot"', 'boot-dir = "/boot"', 'boot-attempts = 2']);
    const config = parseConfig(toml, { root: base });
    const dev = await DeviceDeployments.open(config);
    const f: Fake = { base, store: dev.store, events: [] };
    const run = async (n: number) => (await deploy(f, n, dev.deployOptions())).deployment;
    const boots = async (id: string) => {
      await mkdir(join(base, 'proc'), { recursive: true });
      await writeFile(join(base, 'proc/cmdline'), `root=PARTLABEL=data ferry.deployment=${id}\n`);
      return DeviceDeployments.open(config);
    };
    return { config, f, run, boots };
  }

  it('marks the running deployment good when the checks pass', caps, async () => {
    const { config, run, boots } = await bootDevice('bc-good', true);
    const d1 = await run(11);
    const dev = await boots(d1);
    const r = await deployBootCheck(dev, {});
    assert.equal(r.result, 'good');
    assert.equal(r.fellBackFrom, undefined);
    assert.equal((await listBootEntries(config.deploy.bootDir))[0]!.left, undefined);
  });

  it('notices a fallback and makes the running deployment the default again', caps, async () => {
    const { run, boots } = await bootDevice('bc-fallback', true);
    const d1 = await run(11);
    const d2 = await run(12);
    // The bootloader ran out of attempts on d2 and booted d1.
    const dev = await boots(d1);
    const events: string[] = [];
    const r = await deployBootCheck(dev, { onEvent: (e) => events.push(e.id) });
    assert.deepEqual([r.result, r.fellBackFrom], ['good', d2]);
    assert.equal(defaultOf(dev), d1);
    assert.ok(events.includes('rollback.detected'));
  });

  it('rolls back to the previous deployment and reboots when a check fails', caps, async () => {
    const { run, boots, config } = await bootDevice('bc-bad', false);
    const d1 = await run(11);
    const d2 = await run(12);
    let rebooted = 0;
    const dev = await boots(d2);
    const r = await deployBootCheck(dev, { reboot: () => Promise.resolve(void rebooted++) });
    assert.deepEqual([r.result, r.rolledBackTo, rebooted], ['bad', d1, 1]);
    assert.equal(defaultOf(dev), d1);
    assert.equal((await listBootEntries(config.deploy.bootDir))[0]!.id, d1);
  });

  it('stays on the only deployment when its check fails (degraded, no reboot)', caps, async () => {
    const { run, boots } = await bootDevice('bc-degraded', false);
    const d1 = await run(11);
    let rebooted = 0;
    const dev = await boots(d1);
    const r = await deployBootCheck(dev, { reboot: () => Promise.resolve(void rebooted++) });
    assert.deepEqual([r.result, rebooted], ['degraded', 0]);
    assert.equal(defaultOf(dev), d1);
  });
});
