import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import type { Manifest } from '@ferry/core';
import {
  deployRelease,
  DirectoryTreeSource,
  grubSetDefault,
  writeBootEntry,
  writeGrubDeployments,
  type DeviceDeployments,
} from '@ferry/agent';
import { needs } from '@ferry/testing';
import { ensureBootArtefacts } from './artefacts.ts';
import { createDeployDisk, grubEditenvList, openDevice, withDeviceRoot } from './deploy-disk.ts';
import {
  buildDeployInitrd,
  buildReleaseTree,
  DEPLOY_RELEASES,
  releaseKeys,
  signedTreeManifest,
} from './deploy-trees.ts';
import type { DiskLayout } from './disk-state.ts';
import { Vm } from './qemu.ts';
import { BOOT_MS } from './scenario.ts';

/** A well-formed deployment id no checkout has: the refusal path. */
const MISSING = '9-0123456789ab';

/** What one boot of a deployment showed, from its GRUB line to its last line. */
interface DeployBoot {
  grub: string;
  release: string;
  cmdline: string;
  mounts: string;
  etc: string;
  vars: string;
}

// One disk, three qemu runs (the host changes the disk between them): v1 committed (1 boot);
// v2 on trial that never comes up (2 boots) and GRUB's fallback to v1 (1 boot); a default that
// names a missing deployment (1 boot) and the fallback to v1 (1 boot).
describe(
  'S6 deployments boot on GRUB',
  needs('qemu', 'grub-bios', 'busybox', 'root', 'loop', 'grub-editenv', 'grub-script-check'),
  () => {
    const ids = { v1: '', v2: '' };
    const manifests: Record<string, Manifest> = {};
    const spans: string[] = [];
    let dir: string;
    let disk: string;
    let layout: DiskLayout;
    let trees: { v1: string; v2: string };
    let vm: Vm | undefined;
    let started: number;

    const root = () => join(dir, 'device-root');
    const onDevice = <T>(fn: () => T | Promise<T>) => withDeviceRoot(disk, layout, root(), fn);
    const deploy = (dev: DeviceDeployments, v: 'v1' | 'v2') =>
      deployRelease({
        store: dev.store,
        manifest: manifests[v]!,
        image: 'rootfs',
        source: new DirectoryTreeSource(trees[v]),
        compatible: dev.config.compatible,
        ...dev.deployOptions(),
      });

    before(async () => {
      started = Date.now();
      const a = await ensureBootArtefacts();
      dir = join(a.cache, 'runs', 's6-deployments');
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir, { recursive: true });
      const initrd = join(dir, 'initrd-deploy.img');
      await buildDeployInitrd(a.initrd, initrd);
      const keys = releaseKeys();
      trees = { v1: join(dir, 'trees', 'v1'), v2: join(dir, 'trees', 'v2') };
      for (const v of ['v1', 'v2'] as const) {
        await buildReleaseTree(trees[v], DEPLOY_RELEASES[v], a.kernelDir, initrd);
        manifests[v] = await signedTreeManifest(trees[v], DEPLOY_RELEASES[v], keys);
      }
      disk = join(dir, 'disk.img');
      layout = createDeployDisk(disk);
      // v1: the first deployment, committed (what `ferry deploy mark-good` leaves).
      await onDevice(async () => {
        const dev = await openDevice(root(), '');
        ids.v1 = (await deploy(dev, 'v1')).deployment;
        await dev.markGood();
      });
      spans.push(`disk prepared: ${((Date.now() - started) / 1000).toFixed(1)} s`);
    });
    after(async () => {
      await vm?.powerCut();
      if (!dir) return;
      const line = `s6-deployments: ${((Date.now() - started) / 1000).toFixed(1)} s (${spans.join('; ')})`;
      appendFileSync(join(dir, '..', 'timings.txt'), `${new Date().toISOString()} ${line}\n`);
      console.log(`# timing ${line}`);
    });

    /** Starts qemu on the disk (after killing one a failed step left); one console log for all. */
    async function boot(): Promise<Vm> {
      await vm?.powerCut();
      vm = Vm.start({ disk, log: join(dir, 'console.log') });
      return vm;
    }

    /** GRUB's two lines from line `at` on: `boot=<id> def=<id> prev=<id> left 1=<n> 2=<n> 9=<n>`. */
    async function grubAt(v: Vm, at: number): Promise<string> {
      const left = await v.waitFor(/^FERRY-GRUB-LEFT: (.*)$/, BOOT_MS, at);
      return `${v.lines[at]!.text.slice('FERRY-GRUB: '.length)} left ${left[1] ?? ''}`;
    }

    /** Index of the first line at or after `from` matching `re`, waiting for it. */
    async function lineAt(v: Vm, re: RegExp, from: number): Promise<number> {
      await v.waitFor(re, BOOT_MS, from);
      return v.lines.findIndex((l, i) => i >= from && re.test(l.text));
    }

    /** Waits for the next boot after line `from`: GRUB's choice, then the deployment's report. */
    async function nextBoot(v: Vm, from: number): Promise<{ at: number; boot: DeployBoot }> {
      const at = await lineAt(v, /^FERRY-GRUB: /, from);
      const get = async (re: RegExp) => (await v.waitFor(re, BOOT_MS, at))[1] ?? '';
      const init = await v.waitFor(
        /^FERRY-DEPLOY-INIT: up release=(\S+) cmdline=(.*)$/,
        BOOT_MS,
        at,
      );
      const boot = {
        grub: await grubAt(v, at),
        release: init[1] ?? '',
        cmdline: init[2] ?? '',
        mounts: await get(/^FERRY-DEPLOY-MOUNTS: (.*)$/),
        etc: (await get(/^FERRY-DEPLOY-ETC: (.*)$/)).trim(),
        vars: (await get(/^FERRY-DEPLOY-VAR: (.*)$/)).trim(),
      };
      return { at, boot };
    }

    /** Seconds of each boot of this qemu run: GRUB line to the next GRUB line, or to the shell. */
    function recordSpans(v: Vm, label: string): void {
      const grub = v.lines.flatMap((l, i) => (l.text.startsWith('FERRY-GRUB: ') ? [i] : []));
      const shell = v.lines.findLastIndex((l) => l.text === 'FERRY-SHELL: ready');
      grub.forEach((g, k) => {
        const start = k === 0 ? 0 : v.lines[g]!.t;
        const end = v.lines[grub[k + 1] ?? shell]!.t;
        const what = /boot=(\S*)/.exec(v.lines[g]!.text)?.[1];
        spans.push(`${label} boot ${k + 1} (${what}): ${(end - start).toFixed(1)} s`);
      });
    }

    const choices = (v: Vm) =>
      v.lines.flatMap((l) => /^FERRY-GRUB: boot=(\S*)/.exec(l.text)?.[1] ?? []);

    let lastCmdline = '';

    describe('when v1 is the committed default', () => {
      it('GRUB boots v1: / and /usr read-only, /etc and /var writable, its id on the cmdline', async () => {
        const v = await boot();
        const { boot: b } = await nextBoot(v, 0);
        await v.waitFor(/^FERRY-SHELL: ready/, BOOT_MS);
        assert.match(b.grub, new RegExp(`^boot=${ids.v1} def=${ids.v1} prev= left 1= 2= 9=$`));
        assert.equal(b.release, '1.0.0', v.tail());
        assert.ok(b.cmdline.split(' ').includes(`ferry.deployment=${ids.v1}`), b.cmdline);
        assert.equal(b.mounts, 'root=ro usr=ro etc=rw var=rw', v.tail());
        assert.equal(b.etc, '1.0.0');
        assert.equal(b.vars, '1.0.0');
        lastCmdline = b.cmdline;
        await v.shutdown();
        recordSpans(v, 'run 1');
      });
    });

    describe('when v2 is deployed on trial and never comes up healthy', () => {
      it('the host deploys v2 with 2 attempts, carrying v1 /etc change over', async () => {
        await onDevice(async () => {
          const dev = await openDevice(root(), lastCmdline);
          assert.equal(dev.current()?.id, ids.v1);
          const r = await deploy(dev, 'v2');
          ids.v2 = r.deployment;
          assert.equal(r.etcFrom, ids.v1);
          // Only etc/ferry-release and usr/lib/ferry-vm/health differ from v1.
          assert.equal(r.fetched.objects, 2);
          const etc = join(root(), 'var/lib/ferry/deploy/etc', ids.v2, 'ferry-boots');
          assert.equal(readFileSync(etc, 'utf8'), '1.0.0\n');
          const env = grubEditenvList(root());
          assert.equal(env.ferry_default, ids.v2);
          assert.equal(env.ferry_previous, ids.v1);
          assert.equal(env.ferry_2_left, '2');
          const check = join(root(), 'boot/grub/ferry-deployments.cfg');
          assert.equal(spawnSync('grub-script-check', [check]).status, 0);
        });
      });

      it('GRUB boots v2 twice (it sees the v1 /etc line), then falls back to v1 by itself', async () => {
        const v = await boot();
        const first = await nextBoot(v, 0);
        assert.match(
          first.boot.grub,
          new RegExp(`^boot=${ids.v2} def=${ids.v2} prev=${ids.v1} left 1= 2=1 `),
        );
        assert.equal(first.boot.release, '2.0.0', v.tail());
        assert.ok(first.boot.cmdline.split(' ').includes(`ferry.deployment=${ids.v2}`));
        assert.equal(first.boot.mounts, 'root=ro usr=ro etc=rw var=rw');
        assert.equal(first.boot.etc, '1.0.0 2.0.0', 'the /etc line written under v1 is there');
        const second = await nextBoot(v, first.at + 1);
        assert.match(second.boot.grub, new RegExp(`^boot=${ids.v2} .* 2=0 `));
        const back = await nextBoot(v, second.at + 1);
        await v.waitFor(/^FERRY-SHELL: ready/, BOOT_MS, back.at);
        assert.match(
          back.boot.grub,
          new RegExp(`^boot=${ids.v1} def=${ids.v2} prev=${ids.v1} left 1= 2=0 `),
        );
        assert.equal(back.boot.release, '1.0.0');
        // A rollback runs with the /etc v1 had; what v2 wrote to its own /etc stays there.
        assert.equal(back.boot.etc, '1.0.0 1.0.0');
        assert.equal(back.boot.vars, '1.0.0 2.0.0 2.0.0 1.0.0', '/var is shared');
        assert.deepEqual(choices(v), [ids.v2, ids.v2, ids.v1]);
        lastCmdline = back.boot.cmdline;
        await v.shutdown();
        recordSpans(v, 'run 2');
      });

      it('grubenv shows v2 out of attempts (ferry_2_left=0), still the default', async () => {
        await onDevice(() => {
          const env = grubEditenvList(root());
          assert.deepEqual(
            [env.ferry_default, env.ferry_previous, env.ferry_2_left],
            [ids.v2, ids.v1, '0'],
          );
          assert.equal(
            readFileSync(join(root(), 'var/ferry-boots'), 'utf8'),
            '1.0.0\n2.0.0\n2.0.0\n1.0.0\n',
          );
        });
      });
    });

    describe('when the default boot entry names a deployment the data partition lacks', () => {
      it('the host rolls back to v1 as the agent would, then makes the missing one default', async () => {
        await onDevice(async () => {
          const dev = await openDevice(root(), lastCmdline);
          assert.deepEqual(await dev.rollback(), { from: ids.v2, to: ids.v1 });
          const c = dev.config.deploy;
          await writeBootEntry({
            bootDir: c.bootDir,
            deployment: { id: MISSING, version: '9.0.0', path: dev.store.deploymentPath(ids.v1) },
            root: c.kernelRoot,
            kernelArgs: c.kernelArgs,
          });
          await writeGrubDeployments(c.bootDir);
          await grubSetDefault(c.grubEnv, MISSING, 1);
          const env = grubEditenvList(root());
          assert.deepEqual(
            [env.ferry_default, env.ferry_previous, env.ferry_9_left],
            [MISSING, ids.v1, '1'],
          );
        });
      });

      it('the initramfs refuses it with one ferry-deploy-root line, panics, and GRUB boots v1', async () => {
        const v = await boot();
        const at = await lineAt(v, /^FERRY-GRUB: /, 0);
        assert.match(
          await grubAt(v, at),
          new RegExp(`^boot=${MISSING} def=${MISSING} prev=${ids.v1} left 1= 2= 9=0$`),
        );
        await lineAt(v, /Kernel panic/, at);
        const back = await nextBoot(v, at + 1);
        await v.waitFor(/^FERRY-SHELL: ready/, BOOT_MS, back.at);
        const refused = v.lines.slice(at, back.at).map((l) => l.text);
        const lines = refused.filter((t) => t.startsWith('ferry-deploy-root:'));
        assert.equal(lines.length, 1, refused.join('\n'));
        assert.match(lines[0]!, new RegExp(`deployment ${MISSING} not found`));
        assert.ok(refused.some((t) => t.startsWith('FERRY-INITRAMFS-FAIL:')));
        assert.ok(!refused.some((t) => t.startsWith('FERRY-DEPLOY-INIT:')), 'nothing booted');
        assert.match(
          back.boot.grub,
          new RegExp(`^boot=${ids.v1} def=${MISSING} prev=${ids.v1} left 1= 2= 9=0$`),
        );
        assert.equal(back.boot.release, '1.0.0');
        assert.deepEqual(choices(v), [MISSING, ids.v1]);
        await v.shutdown();
        recordSpans(v, 'run 3');
        await onDevice(() => {
          assert.equal(grubEditenvList(root()).ferry_9_left, '0');
        });
      });
    });
  },
);
