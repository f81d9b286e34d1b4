/**
 * Power-cut safety of deployments: a deploy of release 3 onto a device booted into release 2
 * (release 1 kept as the previous one, keep = 2, so the deploy also prunes and collects) is
 * SIGKILLed at every named step (fault.ts DEPLOY_FAULT_POINTS) and at FERRY_FAULT_INJECTIONS
 * random instants (default 50, half on each boot side), on systemd-boot with a fake ESP and on GRUB
 * with a real grubenv. After each kill: what the bootloader boots next is a recorded
 * deployment that verifies and has its /etc; the booted deployment and its /etc are untouched.
 * Then the device starts again (DeviceDeployments.open) and re-runs the deploy, which must end
 * with release 3 the default and the store, the boot entries and etc/ in agreement.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcessByStdio } from 'node:child_process';
import {
  access,
  chmod,
  lstat,
  mkdir,
  readFile,
  readdir,
  readlink,
  rename,
  rm,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { encodeTree, scanTree, treeDigest, type Manifest } from '@ferry/core';
import { needs, tempDir, treeManifest } from '@ferry/testing';
import { parseConfig, type DeployConfig } from './config.ts';
import { listBootEntries } from './deploy-boot.ts';
import { leftVariable, readGrubDeployments } from './deploy-boot-grub.ts';
import { deployBootFor } from './deploy-bootloader.ts';
import { deployOnDevice, type FaultDevice } from './deploy-fault-child.ts';
import { deployToml, makeReleaseTree } from './deploy-fixture.ts';
import { DeployStore } from './deploy-store.ts';
import { DEPLOY_FAULT_POINTS, type FaultPoint } from './fault.ts';

const caps = needs('setfattr', 'mknod', 'grub-editenv');
/** The same variable as the install suite (install-faults.test.ts): cuts in this suite. */
const injections = Number(process.env.FERRY_FAULT_INJECTIONS ?? 50);
const child = join(import.meta.dirname, 'deploy-fault-child.ts');
const BOOTS = ['systemd-boot', 'grub'] as const;
const perSide = Math.ceil(injections / BOOTS.length);
type Boot = (typeof BOOTS)[number];
/** Steps inside a loop are cut at this pass (deploy 3 imports 5 objects, gc deletes 4). */
const HIT: Partial<Record<FaultPoint, string>> = { 'deploy-object': '2', 'deploy-gc': '2' };

let t: { dir: string; cleanup: () => Promise<void> };
const tree3 = { digest: '' };

interface Side {
  boot: Boot;
  dev: FaultDevice;
  pristine: string;
  deploy: DeployConfig;
  d1: string;
  d2: string;
  bootedEtc: Map<string, string>;
}
const sides = new Map<Boot, Side>();

function manifest(n: number, bytes: Buffer, entries: number): Manifest {
  return treeManifest(bytes, entries, { version: `${n}.0.0`, counter: n });
}

/** Release n: the fixture tree with a kernel and initramfs of its own in boot/. */
async function release(n: number): Promise<{ dir: string; manifest: string }> {
  const dir = join(t.dir, `rootfs-v${n}`);
  await makeReleaseTree(dir, n);
  await mkdir(join(dir, 'boot'));
  await writeFile(join(dir, 'boot/vmlinuz-6.1.0-ferry'), `kernel ${n}\n`);
  await writeFile(join(dir, 'boot/initrd.img-6.1.0-ferry'), `initrd ${n}\n`);
  const listing = await scanTree(dir);
  const bytes = encodeTree(listing);
  if (n === 3) tree3.digest = treeDigest(bytes);
  const path = join(t.dir, `manifest-${n}.json`);
  await writeFile(path, JSON.stringify(manifest(n, bytes, listing.entries.length)));
  return { dir, manifest: path };
}

const toml = (boot: Boot) =>
  deployToml(['keep = 2', `boot = "${boot}"`, 'boot-dir = "/boot"'], ['data-directory = "/data"']);

/** Every entry under `dir`: mode, owner and content (or link target), byte for byte. */
async function snapshot(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const rel of (await readdir(dir, { recursive: true })).sort()) {
    const p = join(dir, rel);
    const s = await lstat(p);
    const body = s.isFile()
      ? (await readFile(p)).toString('base64')
      : s.isSymbolicLink()
        ? await readlink(p)
        : '';
    out.set(rel, `${s.mode}:${s.uid}:${s.gid}:${body}`);
  }
  return out;
}

/** Boots deployment `id` on the fake device: the kernel command line its entry writes. */
const bootInto = (root: string, id: string) =>
  writeFile(join(root, 'proc/cmdline'), `root=PARTLABEL=data ferry.deployment=${id}\n`);

/** Provisions a device running release 2, release 1 kept, both marked good; keeps a copy. */
async function provision(boot: Boot, trees: string[], manifests: string[]): Promise<Side> {
  const base = join(t.dir, boot);
  const root = join(base, 'root');
  await mkdir(join(root, 'proc'), { recursive: true });
  await writeFile(join(base, 'ferry.toml'), toml(boot));
  const deploy = parseConfig(toml(boot), { root }).deploy;
  if (boot === 'grub') {
    await mkdir(join(deploy.bootDir, 'grub'), { recursive: true });
    execFileSync('grub-editenv', [deploy.grubEnv, 'create']);
  }
  const dev = (n: number): FaultDevice => ({
    root,
    config: join(base, 'ferry.toml'),
    manifest: manifests[n]!,
    tree: trees[n]!,
  });
  const bootSide = deployBootFor(deploy)!;
  const d1 = (await deployOnDevice(dev(1)))!.deployment;
  await bootInto(root, d1);
  await bootSide.markGood(d1);
  const d2 = (await deployOnDevice(dev(2)))!.deployment;
  await bootInto(root, d2);
  await bootSide.markGood(d2);
  const store = await DeployStore.open(deploy.store);
  await store.markBooted(d2);
  // Local changes the deploy must carry over, and that no cut may touch.
  await writeFile(join(store.dir, 'etc', d2, 'hostname'), 'gw-17\n');
  await writeFile(join(store.dir, 'etc', d2, 'local.conf'), 'mine\n');
  const bootedEtc = await snapshot(join(store.dir, 'etc', d2));
  const pristine = join(base, 'pristine');
  execFileSync('cp', ['-a', root, pristine]);
  return { boot, dev: dev(3), pristine, deploy, d1, d2, bootedEtc };
}

before(async () => {
  if (caps.skip) return;
  t = await tempDir('ferry-deploy-faults-');
  const trees: string[] = [];
  const manifests: string[] = [];
  for (const n of [1, 2, 3]) {
    const r = await release(n);
    trees[n] = r.dir;
    manifests[n] = r.manifest;
  }
  for (const boot of BOOTS) sides.set(boot, await provision(boot, trees, manifests));
});
after(async () => {
  for (const p of spare.values()) p.kill('SIGKILL');
  if (!t) return;
  for (const n of [1, 2, 3])
    await chmod(join(t.dir, `rootfs-v${n}`, 'var/empty'), 0o755).catch(() => {});
  await t.cleanup();
});

/** Puts the device back as provisioned: release 2 booted, release 3 not yet deployed. */
async function reset(s: Side): Promise<void> {
  await rm(s.dev.root, { recursive: true, force: true });
  execFileSync('cp', ['-a', s.pristine, s.dev.root]);
}

interface Run {
  signal: NodeJS.Signals | null;
  code: number | null;
  lastEvent: string;
  ms: number;
  firstEventMs: number;
}

/**
 * A child loaded ahead of time and waiting on stdin (deploy-fault-child.ts --wait), so that its
 * start-up overlaps the checks of the previous cut; the compile cache makes start-up short.
 */
const spare = new Map<Boot, ChildProcessByStdio<Writable, Readable, null>>();
function startChild(s: Side): ChildProcessByStdio<Writable, Readable, null> {
  const d = s.dev;
  return spawn(process.execPath, [child, d.root, d.config, d.manifest, d.tree, '--wait'], {
    env: { ...process.env, NODE_COMPILE_CACHE: join(t.dir, 'compile-cache') },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
}

/** Runs the deploy in a child process, optionally SIGKILLing it after `killAfterMs`. */
function runDeploy(
  s: Side,
  opts: { killAfterMs?: number; fromFirstEvent?: boolean; env?: Record<string, string> } = {},
): Promise<Run> {
  const p = spare.get(s.boot) ?? startChild(s);
  spare.delete(s.boot);
  return new Promise((resolve, reject) => {
    let out = '';
    let firstEventMs = -1;
    let timer: NodeJS.Timeout | undefined;
    const arm = () => (timer = setTimeout(() => p.kill('SIGKILL'), opts.killAfterMs));
    p.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      if (firstEventMs >= 0) return;
      firstEventMs = Date.now() - start;
      if (opts.killAfterMs !== undefined && opts.fromFirstEvent) arm();
    });
    p.on('error', reject);
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      spare.set(s.boot, startChild(s));
      const last = out.trim().split('\n').at(-1) ?? '';
      let lastEvent = 'none';
      try {
        lastEvent = (JSON.parse(last) as { id?: string }).id ?? 'none';
      } catch {
        lastEvent = last ? 'partial-line' : 'none';
      }
      resolve({ signal, code, lastEvent, ms: Date.now() - start, firstEventMs });
    });
    const start = Date.now();
    p.stdin.end(`${JSON.stringify(opts.env ?? {})}\n`);
    if (opts.killAfterMs !== undefined && !opts.fromFirstEvent) arm();
  });
}

/** The deployment the bootloader boots next, as the firmware or GRUB would choose it. */
async function bootsNext(s: Side): Promise<string | undefined> {
  if (s.boot === 'systemd-boot') {
    const e = (await listBootEntries(s.deploy.bootDir))[0];
    return e && e.left !== 0 ? e.id : undefined;
  }
  execFileSync('grub-editenv', [s.deploy.grubEnv, 'list']); // GRUB's own tool still reads it
  return (await readGrubDeployments(s.deploy.grubEnv)).default;
}

/** The invariants that must hold right after a cut at any instant. */
async function checkAfterCut(s: Side, ctx: string): Promise<string> {
  const next = await bootsNext(s);
  assert.ok(next, `${ctx}: some deployment boots next`);
  const store = await DeployStore.open(s.deploy.store); // the store's own recovery, as at boot
  assert.ok(
    store.list().some((d) => d.id === next),
    `${ctx}: ${next} is recorded`,
  );
  await store.verifyDeployment(next);
  assert.ok((await lstat(join(store.dir, 'etc', next))).isDirectory(), `${ctx}: it has its /etc`);
  const e = (await listBootEntries(s.deploy.bootDir)).find((x) => x.id === next);
  assert.ok(e, `${ctx}: ${next} has a boot entry`);
  await access(join(s.deploy.bootDir, e.linux));
  await access(join(s.deploy.bootDir, e.initrd));
  if (s.boot === 'grub') {
    const cfg = await readFile(join(s.deploy.bootDir, 'grub/ferry-deployments.cfg'), 'utf8');
    assert.ok(cfg.includes(`--id ferry-${next} {`), `${ctx}: GRUB's menu has ${next}`);
  }
  await store.verifyDeployment(s.d2);
  assert.deepEqual(
    await snapshot(join(store.dir, 'etc', s.d2)),
    s.bootedEtc,
    `${ctx}: the booted /etc is untouched`,
  );
  return next;
}

const sorted = (a: Iterable<string>) => [...a].sort();

/** After the re-run: release 3 is the default everywhere, and nothing is left over. */
async function checkCompleted(s: Side, ctx: string): Promise<string> {
  const store = await DeployStore.open(s.deploy.store);
  const list = store.list();
  const def = list.find((d) => d.isDefault);
  assert.equal(def?.tree, tree3.digest, `${ctx}: release 3 is the default`);
  assert.equal(list.find((d) => d.isPrevious)?.id, s.d2, `${ctx}: the booted one is previous`);
  assert.equal(await bootsNext(s), def.id, `${ctx}: the bootloader boots it next`);
  const boot = deployBootFor(s.deploy)!;
  assert.equal(await boot.committed(), def.id);
  if (s.boot === 'grub') assert.equal((await readGrubDeployments(s.deploy.grubEnv)).previous, s.d2);
  const ids = sorted(list.map((d) => d.id));
  assert.deepEqual(sorted(await boot.entries()), ids, `${ctx}: one boot entry per deployment`);
  assert.deepEqual(sorted(await readdir(join(store.dir, 'etc'))), ids, `${ctx}: etc/ agrees`);
  const checkouts = sorted(await readdir(join(store.dir, 'deployments')));
  assert.deepEqual(checkouts, ids, `${ctx}: deployments/ agrees`);
  assert.deepEqual(await readdir(join(store.dir, 'objects', 'tmp')), []);
  for (const d of list) {
    await store.verifyDeployment(d.id);
    assert.deepEqual(await store.missingObjects(await store.readTree(d.tree)), [], ctx);
  }
  const etc = (p: string) => readFile(join(store.dir, 'etc', def.id, p), 'utf8');
  assert.deepEqual(
    [await etc('hostname'), await etc('local.conf'), await etc('os-release')],
    ['gw-17\n', 'mine\n', 'VERSION_ID=3\n'],
    `${ctx}: the booted /etc was carried over`,
  );
  return def.id;
}

/** Deterministic PRNG so a failing instant can be replayed (seed printed in the diagnostics). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** Cuts at `point`, checks, restarts and re-runs; returns what booted next after the cut. */
async function cutAt(s: Side, point: FaultPoint): Promise<string> {
  await reset(s);
  const hit = HIT[point];
  const r = await runDeploy(s, {
    env: { FERRY_FAULT_AT: point, ...(hit ? { FERRY_FAULT_HIT: hit } : {}) },
  });
  assert.equal(r.signal, 'SIGKILL', `${point}: the fault point was reached`);
  const next = await checkAfterCut(s, `${s.boot}, cut at ${point}`);
  await deployOnDevice(s.dev);
  await checkCompleted(s, `${s.boot}, re-run after a cut at ${point}`);
  return next;
}

const stateDefault = async (s: Side) =>
  (
    JSON.parse(await readFile(join(s.deploy.store, 'deployments.json'), 'utf8')) as {
      default: string;
    }
  ).default;

for (const boot of BOOTS) {
  describe(`deployRelease under power cuts, on ${boot}`, () => {
    describe('when killed at every named step', () => {
      it('boots a good system after each cut, and a re-run completes', caps, async () => {
        const s = sides.get(boot)!;
        const switched = DEPLOY_FAULT_POINTS.indexOf('deploy-boot-committed');
        for (const [i, point] of DEPLOY_FAULT_POINTS.entries()) {
          const next = await cutAt(s, point);
          // Before the bootloader's switch the booted release boots next; from it on, release 3.
          assert.equal(next === s.d2, i < switched, `${point}: ${next} boots next`);
        }
      });
    });

    describe('when killed between the bootloader switch and deployments.json', () => {
      it(
        "moves the store's default to what the bootloader boots, deploying nothing again",
        caps,
        async () => {
          const s = sides.get(boot)!;
          await reset(s);
          const r = await runDeploy(s, { env: { FERRY_FAULT_AT: 'deploy-boot-committed' } });
          assert.equal(r.signal, 'SIGKILL');
          const next = await bootsNext(s);
          assert.notEqual(next, s.d2);
          assert.equal(await stateDefault(s), s.d2, 'the record still names the old default');
          assert.equal(await deployOnDevice(s.dev), undefined, 'the re-run finds it deployed');
          assert.equal(await stateDefault(s), next);
          assert.equal(await checkCompleted(s, 'after the roll-forward'), next);
        },
      );
    });

    describe('when the new deployment ran out of boot attempts', () => {
      it("keeps the store's default: a fallback is not a commit", caps, async () => {
        const s = sides.get(boot)!;
        await reset(s);
        const d3 = (await deployOnDevice(s.dev))!.deployment;
        if (boot === 'grub')
          execFileSync('grub-editenv', [s.deploy.grubEnv, 'set', `${leftVariable(d3)}=0`]);
        else {
          const dir = join(s.deploy.bootDir, 'loader/entries');
          await rename(join(dir, `ferry-${d3}+3.conf`), join(dir, `ferry-${d3}+0-3.conf`));
          assert.equal(await bootsNext(s), s.d2, 'systemd-boot falls back to the booted one');
        }
        await deployOnDevice(s.dev);
        const store = await DeployStore.open(s.deploy.store);
        assert.equal(store.list().find((d) => d.isDefault)?.id, d3);
        assert.deepEqual(
          store.list().map((d) => d.id),
          [s.d2, d3],
          'nothing discarded',
        );
      });
    });

    describe('when killed after prune removed a deployment, before its boot entry', () => {
      it('removes the orphaned entry and its kernel on the next start', caps, async () => {
        const s = sides.get(boot)!;
        await reset(s);
        await runDeploy(s, { env: { FERRY_FAULT_AT: 'deploy-pruned' } });
        const side = deployBootFor(s.deploy)!;
        assert.ok((await side.entries()).includes(s.d1), 'the cut left the entry of d1');
        await deployOnDevice(s.dev);
        assert.equal((await side.entries()).includes(s.d1), false);
        const kernels = await readdir(join(s.deploy.bootDir, 'ferry'));
        assert.equal(kernels.length, 4, 'the kernels and initramfs images of releases 2 and 3');
      });
    });

    describe(`when killed at ${perSide} random instants`, () => {
      it('boots a good system every time, and a re-run always completes', caps, async (tc) => {
        const s = sides.get(boot)!;
        const seed = Number(process.env.FERRY_FAULT_SEED ?? Date.now() % 1e9);
        const random = mulberry32(seed);
        // The deploy's length, re-measured by every run the cut missed: the machine's load varies.
        const took = { all: 0, work: 0 };
        const measure = (r: Run) => {
          const w = took.all === 0 ? 1 : 0.5;
          took.all += w * (r.ms - took.all);
          took.work += w * (r.ms - r.firstEventMs - took.work);
        };
        for (let i = 0; i < 2; i++) {
          await reset(s);
          const r = await runDeploy(s);
          assert.equal(r.code, 0);
          measure(r);
        }
        await checkCompleted(s, 'baseline');
        let landed = 0;
        let tries = 0;
        const phases = new Map<string, number>();
        const ms = { child: 0, check: 0, rerun: 0 };
        const clock = (k: keyof typeof ms, t0: number) => (ms[k] += Date.now() - t0);
        while (landed < perSide && tries < perSide * 4) {
          tries++;
          await reset(s);
          // A fifth of the cuts fall anywhere in the run (its start-up and recovery included);
          // the rest inside the deploy's own work, measured from its first event.
          const anywhere = random() < 0.2;
          const at = Math.floor(random() * 1.1 * (anywhere ? took.all : took.work));
          let t0 = Date.now();
          const r = await runDeploy(s, { killAfterMs: at, fromFirstEvent: !anywhere });
          clock('child', t0);
          if (r.signal !== 'SIGKILL') {
            measure(r);
            continue; // finished before the cut: not an injection
          }
          landed++;
          phases.set(r.lastEvent, (phases.get(r.lastEvent) ?? 0) + 1);
          const ctx = `${boot}, cut ${landed} at ${at} ms (seed ${seed}, after ${r.lastEvent})`;
          t0 = Date.now();
          await checkAfterCut(s, ctx);
          clock('check', t0);
          t0 = Date.now();
          await deployOnDevice(s.dev);
          clock('rerun', t0);
          t0 = Date.now();
          await checkCompleted(s, ctx);
          clock('check', t0);
        }
        tc.diagnostic(
          `power cuts (${boot}): ${landed} injected in ${tries} runs, 0 failures, seed ${seed}, deploy ~${Math.round(took.all)} ms (${Math.round(took.work)} ms from the first event); children ${ms.child} ms, checks ${ms.check} ms, re-runs ${ms.rerun} ms; last event before the cut: ${[...phases].map(([k, v]) => `${k} ${v}`).join(', ')}`,
        );
        assert.ok(landed >= perSide, `only ${landed} of ${perSide} cuts landed`);
      });
    });
  });
}
