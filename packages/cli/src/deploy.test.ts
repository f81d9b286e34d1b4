/** End-to-end: `ferry deploy status` and `ferry etc diff` on a fake root holding a deployment. */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  DeviceDeployments,
  DirectoryTreeSource,
  deployRelease,
  loadConfig,
  type DeployStatus,
  type EtcChange,
} from '@ferry/agent';
import { encodeTree, scanTree, type Manifest } from '@ferry/core';
import { needs, tempDir, treeManifest } from '@ferry/testing';

const caps = needs('setfattr');
const FERRY = join(import.meta.dirname, '..', 'bin', 'ferry');
let t: { dir: string; cleanup: () => Promise<void> };
let root: string;
let deployed: string;

const ferry = (...args: string[]) =>
  spawnSync(FERRY, [...args, '--root', root], { encoding: 'utf8' });

/** A manifest signing the tree in `dir` (signatures are not what this test is about). */
async function manifestFor(dir: string): Promise<Manifest> {
  const listing = await scanTree(dir);
  return treeManifest(encodeTree(listing), listing.entries.length);
}

before(async () => {
  if (caps.skip) return;
  t = await tempDir('ferry-cli-deploy-');
  root = join(t.dir, 'root');
  await mkdir(join(root, 'etc/ferry'), { recursive: true });
  await writeFile(
    join(root, 'etc/ferry/system.toml'),
    '[system]\ncompatible = "board-x"\nbootloader = "file"\n[bootloader.file]\npath = "/boot/ferry-boot.json"\n[daemon]\nsocket = "/run/ferry.sock"\n[slot.rootfs.0]\ndevice = "/a.img"\nbootname = "A"\n[slot.rootfs.1]\ndevice = "/b.img"\nbootname = "B"\n',
  );
  const tree = join(t.dir, 'tree');
  await mkdir(join(tree, 'etc'), { recursive: true });
  await mkdir(join(tree, 'usr/bin'), { recursive: true });
  await writeFile(join(tree, 'etc/hostname'), 'ferry\n');
  await writeFile(join(tree, 'etc/ntp.conf'), 'server pool.ntp.org\n');
  await writeFile(join(tree, 'usr/bin/tool'), 'tool\n');
  const dev = await DeviceDeployments.open(await loadConfig({ root }));
  const r = await deployRelease({
    store: dev.store,
    manifest: await manifestFor(tree),
    image: 'rootfs',
    source: new DirectoryTreeSource(tree),
    compatible: 'board-x',
    ...dev.deployOptions(),
  });
  deployed = r.deployment;
  await writeFile(join(dev.store.dir, 'etc', deployed, 'ntp.conf'), 'server ntp.example\n');
});
after(() => t?.cleanup());

describe('ferry deploy', () => {
  describe('when the store holds one deployment', () => {
    it('status --json lists it as the default with the store usage', caps, () => {
      const r = ferry('deploy', 'status', '--json');
      assert.equal(r.status, 0, r.stderr);
      const s = JSON.parse(r.stdout) as DeployStatus;
      assert.equal(s.default, deployed);
      assert.equal(s.store, join(root, 'var/lib/ferry/deploy'));
      assert.deepEqual(
        s.deployments.map((d) => [d.id, d.release.version, d.isDefault]),
        [[deployed, '1.0.0', true]],
      );
      assert.equal(s.usage.objects, 3);
    });
    it('etc diff --json shows the local change with a diff', caps, () => {
      const r = ferry('etc', 'diff', '--json');
      assert.equal(r.status, 0, r.stderr);
      const d = JSON.parse(r.stdout) as { deployment: string; changes: EtcChange[] };
      assert.equal(d.deployment, deployed);
      assert.deepEqual(
        d.changes.map((c) => [c.path, c.kind]),
        [['ntp.conf', 'modified']],
      );
      assert.match(d.changes[0]!.diff ?? '', /\+server ntp\.example/);
    });
    it('rollback without a previous deployment fails with ROLLBACK_NO_TARGET', caps, () => {
      const r = ferry('deploy', 'rollback', '--json');
      assert.equal(r.status, 1);
      assert.equal(
        (JSON.parse(r.stdout) as { error: { code: string } }).error.code,
        'ROLLBACK_NO_TARGET',
      );
    });
  });
});
