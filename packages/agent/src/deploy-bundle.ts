/**
 * A release as a deployment from a bundle file (USB stick, offline install): the bundle's
 * signatures are checked against the device keyring, the image is written from its verified
 * chunks to a temporary file in the store, mounted read-only, and its tree is deployed through
 * `DirectoryTreeSource`, whose listing must scan to the digest the manifest signs.
 *
 * Invariant: nothing reaches the store before the bundle is verified and the release passed the
 * compatible and downgrade checks; the temporary image lives in `objects/tmp`, which the store
 * empties when it opens, so a power cut leaves nothing behind.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, rm, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  FerryError,
  imageChunks,
  loadKeyring,
  openBundle,
  type ByteSource,
  type OpenedBundle,
} from '@ferry/core';
import type { DeviceDeployments } from './deploy-device.ts';
import {
  checkDeployable,
  deployRelease,
  type DeployEvent,
  type DeployResult,
} from './deploy-install.ts';
import { DirectoryTreeSource, treeImage } from './deploy-source.ts';

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', (e) => reject(new FerryError('TOOL_MISSING', `${cmd}: ${e.message}`)));
    p.on('close', (code) =>
      code === 0
        ? resolve()
        : reject(new FerryError('IO', `${cmd} ${args.join(' ')}: ${err.trim()}`)),
    );
  });
}

/** Writes image `name` of the bundle to `path` from its verified chunks; checks its SHA-256. */
async function writeImage(b: OpenedBundle, name: string, path: string): Promise<void> {
  const img = b.manifest.images[name]!;
  const fh = await open(path, 'wx', 0o600);
  const h = createHash('sha256');
  try {
    for await (const chunk of imageChunks(b, name)) {
      h.update(chunk);
      await fh.write(chunk);
    }
  } finally {
    await fh.close();
  }
  if (h.digest('hex') !== img.sha256)
    throw new FerryError(
      'INSTALL_VERIFY_FAILED',
      `image ${name} is not the one the manifest signs`,
    );
}

/**
 * Deploys the tree the bundle's manifest signs. Needs root and loop devices (the image is
 * mounted read-only with nodev,nosuid).
 *
 * @example
 * const dev = await DeviceDeployments.open(config);
 * const r = await deployBundle(dev, new FileSource('/media/usb/gw-1.3.0.fbd'));
 * console.log(`${r.deployment} boots next`);
 */
export async function deployBundle(
  dev: DeviceDeployments,
  source: ByteSource,
  opts: { image?: string; onEvent?: (e: DeployEvent) => void } = {},
): Promise<DeployResult> {
  const b = await openBundle(source, { keyring: await loadKeyring(dev.config.keyring) });
  const image = treeImage(b.manifest, opts.image);
  const policy = dev.deployOptions();
  const current = dev.store.list().find((d) => d.isDefault);
  // Refused before the image is even written: another device's or an older release.
  checkDeployable(b.manifest, dev.config.compatible, current, policy.allowDowngrade);
  const file = join(
    dev.store.dir,
    'objects',
    'tmp',
    `bundle-${randomBytes(6).toString('hex')}.img`,
  );
  const mnt = await mkdtemp(join(tmpdir(), 'ferry-bundle-'));
  try {
    await writeImage(b, image, file);
    const type = b.manifest.images[image]!.type;
    await run('mount', ['-o', 'loop,ro,nodev,nosuid', '-t', type, file, mnt]);
    try {
      return await deployRelease({
        ...policy,
        store: dev.store,
        manifest: b.manifest,
        image,
        source: new DirectoryTreeSource(mnt),
        compatible: dev.config.compatible,
        ...(opts.onEvent ? { onEvent: opts.onEvent } : {}),
      });
    } finally {
      await run('umount', [mnt]);
    }
  } finally {
    // rmdir, never a recursive rm: if the unmount failed, the mount point holds the image.
    await rmdir(mnt).catch(() => undefined);
    await rm(file, { force: true });
  }
}
