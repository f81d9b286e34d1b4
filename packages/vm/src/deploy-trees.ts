/**
 * S6's releases as deployment trees: small busybox roots (the same busybox-static applets as the
 * A/B root images of build-rootfs.sh, without Node: nothing in the guest runs Ferry), each with
 * Debian's kernel and the deployment initramfs under `boot/` as Debian names them, so
 * writeBootEntry finds them. The manifest signing each tree is signed with a throw-away key and
 * verified against a keyring made from it, as a device verifies what it deploys.
 */
import { spawnSync } from 'node:child_process';
import {
  chmod,
  copyFile,
  mkdir,
  mkdtemp,
  readFile,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import {
  encodeTree,
  generateKeyPair,
  makeKeyring,
  parsePrivateKey,
  parsePublicKey,
  scanTree,
  signManifest,
  verifyManifestEnvelope,
  type Manifest,
} from '@ferry/core';
import { treeManifest } from '@ferry/testing';
import { REPO } from './cache.ts';

const GUEST = join(REPO, 'packages', 'vm', 'guest');
/** The initramfs script under test, copied into the initramfs verbatim. */
export const DEPLOY_ROOT_SCRIPT = join(REPO, 'contrib', 'initramfs', 'ferry-deploy-root.sh');
/** The compatible string of S6's device and releases. */
export const DEPLOY_COMPATIBLE = 'ferry-vm-deploy-x86_64';

/** One release S6 deploys. */
export interface DeployReleaseSpec {
  version: string;
  counter: number;
  /** A release that is not healthy reboots at once, never marked good. */
  healthy: boolean;
}

/** v1 boots and stays; v2 is the update that never comes up healthy. */
export const DEPLOY_RELEASES = {
  v1: { version: '1.0.0', counter: 1, healthy: true },
  v2: { version: '2.0.0', counter: 2, healthy: false },
} as const satisfies Record<string, DeployReleaseSpec>;

function run(cmd: string, args: string[], input?: Buffer): Buffer {
  const r = spawnSync(cmd, args, { input, maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr?.toString()}`);
  return r.stdout;
}

/**
 * The deployment initramfs: the good busybox initramfs `base` with a second gzip'd cpio archive
 * appended (the kernel unpacks concatenated archives, later files replacing earlier ones) that
 * holds `/init` = guest/deploy-initramfs-init and `/bin/ferry-deploy-root` = the contrib script.
 */
export async function buildDeployInitrd(base: string, out: string): Promise<void> {
  const stage = await mkdtemp(`${out}.stage-`);
  try {
    await mkdir(join(stage, 'bin'), { mode: 0o755 });
    await copyFile(join(GUEST, 'deploy-initramfs-init'), join(stage, 'init'));
    await copyFile(DEPLOY_ROOT_SCRIPT, join(stage, 'bin', 'ferry-deploy-root'));
    await chmod(join(stage, 'init'), 0o755);
    await chmod(join(stage, 'bin', 'ferry-deploy-root'), 0o755);
    // No "." entry: it would chmod the initramfs root to the stage directory's mode.
    const cpio = run('sh', [
      '-c',
      'cd "$1" && find . -mindepth 1 -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet --reproducible | gzip -9n',
      'sh',
      stage,
    ]);
    await writeFile(out, Buffer.concat([await readFile(base), cpio]));
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}

/**
 * Writes the root tree of `spec` into `dir`: busybox and its applets, `/sbin/init`
 * (guest/deploy-rootfs-init), `boot/vmlinuz-<kver>` + `boot/initrd.img-<kver>`,
 * `/etc/ferry-release`, `/usr/lib/ferry-vm/health`, and the mount points (read-only root).
 */
export async function buildReleaseTree(
  dir: string,
  spec: DeployReleaseSpec,
  kernelDir: string,
  initrd: string,
): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  for (const d of ['bin', 'sbin', 'etc', 'usr/lib/ferry-vm', 'boot', 'root'])
    await mkdir(join(dir, d), { recursive: true });
  for (const d of ['dev', 'proc', 'sys', 'run', 'tmp', 'var']) await mkdir(join(dir, d));
  await copyFile('/bin/busybox', join(dir, 'bin', 'busybox'));
  await chmod(join(dir, 'bin', 'busybox'), 0o755);
  for (const applet of run('/bin/busybox', ['--list']).toString().split('\n'))
    if (applet !== '' && applet !== 'busybox') await symlink('busybox', join(dir, 'bin', applet));
  await copyFile(join(GUEST, 'deploy-rootfs-init'), join(dir, 'sbin', 'init'));
  await chmod(join(dir, 'sbin', 'init'), 0o755);
  const kver = (await readFile(join(kernelDir, 'version'), 'utf8')).trim();
  await copyFile(join(kernelDir, 'vmlinuz'), join(dir, 'boot', `vmlinuz-${kver}`));
  await copyFile(initrd, join(dir, 'boot', `initrd.img-${kver}`));
  await writeFile(join(dir, 'etc', 'ferry-release'), `${spec.version}\n`);
  await writeFile(join(dir, 'etc', 'hostname'), 'ferry-vm\n');
  await writeFile(join(dir, 'usr/lib/ferry-vm/health'), spec.healthy ? 'good\n' : 'bad\n');
}

/** A release signing key pair and the keyring a device would hold for it. */
export function releaseKeys() {
  const pair = generateKeyPair();
  return {
    key: parsePrivateKey(pair.privateKeyPem),
    keyring: makeKeyring([parsePublicKey(pair.publicKeyPem)], 1),
  };
}

/**
 * The manifest of the release whose `rootfs` image has the tree `dir`, signed with `keys.key`
 * and verified against `keys.keyring` (the image fields describe no real image: S6 deploys the
 * tree only).
 */
export async function signedTreeManifest(
  dir: string,
  spec: DeployReleaseSpec,
  keys: ReturnType<typeof releaseKeys>,
): Promise<Manifest> {
  const tree = await scanTree(dir);
  const manifest = treeManifest(encodeTree(tree), tree.entries.length, {
    compatible: DEPLOY_COMPATIBLE,
    version: spec.version,
    counter: spec.counter,
    type: 'squashfs',
  });
  return verifyManifestEnvelope(signManifest(manifest, [keys.key]), keys.keyring).manifest;
}
