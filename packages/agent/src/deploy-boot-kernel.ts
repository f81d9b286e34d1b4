/**
 * The kernel and initramfs of a deployment, found in the checked-out tree and copied to the boot
 * partition under content-addressed names (`<bootDir>/ferry/vmlinuz-<kver>-<32 hex>`), so
 * deployments with the same kernel share one file on a small ESP.
 */
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, mkdir, open, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { FerryError, fsyncDir } from '@ferry/core';
import { verscmp } from './bootloader-systemd-boot.ts';

/** A kernel and its initramfs inside a deployment (paths relative to the deployment). */
export interface DeploymentKernel {
  kver: string;
  linux: string;
  initrd: string;
}

/** Kernels and initramfs images larger than this are refused (a hostile tree cannot fill /boot). */
export const MAX_KERNEL_BYTES = 512 << 20;
const KVER = /^[A-Za-z0-9._+~-]{1,64}$/;
/** Where the initramfs sits next to `usr/lib/modules/<kver>/vmlinuz`, by distribution. */
const MODULES_INITRD = ['initramfs.img', 'initrd.img', 'initrd'];

/** The entry's type, never following a symlink: a link to /boot would leave the deployment. */
async function kind(path: string): Promise<'file' | 'dir' | undefined> {
  try {
    const st = await lstat(path);
    return st.isFile() ? 'file' : st.isDirectory() ? 'dir' : undefined;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

async function realDirs(root: string, rel: string): Promise<boolean> {
  let p = root;
  for (const part of rel.split('/')) {
    p = join(p, part);
    if ((await kind(p)) !== 'dir') return false;
  }
  return true;
}

async function candidates(root: string): Promise<DeploymentKernel[]> {
  const out: DeploymentKernel[] = [];
  if (await realDirs(root, 'usr/lib/modules'))
    for (const kver of await readdir(join(root, 'usr/lib/modules'))) {
      if (!KVER.test(kver)) continue;
      const dir = `usr/lib/modules/${kver}`;
      if ((await kind(join(root, dir, 'vmlinuz'))) !== 'file') continue;
      for (const name of MODULES_INITRD)
        if ((await kind(join(root, dir, name))) === 'file') {
          out.push({ kver, linux: `${dir}/vmlinuz`, initrd: `${dir}/${name}` });
          break;
        }
    }
  // Debian: boot/vmlinuz-<kver> with boot/initrd.img-<kver>.
  if (await realDirs(root, 'boot'))
    for (const name of await readdir(join(root, 'boot'))) {
      const kver = name.startsWith('vmlinuz-') ? name.slice('vmlinuz-'.length) : '';
      if (!KVER.test(kver) || out.some((k) => k.kver === kver)) continue;
      const initrd = `boot/initrd.img-${kver}`;
      if (
        (await kind(join(root, 'boot', name))) === 'file' &&
        (await kind(join(root, initrd))) === 'file'
      )
        out.push({ kver, linux: `boot/${name}`, initrd });
    }
  return out;
}

/**
 * The newest kernel (by version order) that has an initramfs beside it: `usr/lib/modules/<kver>/`
 * (`vmlinuz` + `initramfs.img`, `initrd.img` or `initrd`) or Debian's `boot/vmlinuz-<kver>` +
 * `boot/initrd.img-<kver>`. Symlinks are never followed. DEPLOY_NO_KERNEL if there is none.
 */
export async function findKernel(deployment: string): Promise<DeploymentKernel> {
  const found = await candidates(deployment);
  const best = found.sort((a, b) => verscmp(b.kver, a.kver))[0];
  if (!best)
    throw new FerryError(
      'DEPLOY_NO_KERNEL',
      `${deployment} has no kernel with an initramfs (boot/vmlinuz-* + boot/initrd.img-*, or usr/lib/modules/*/vmlinuz)`,
    );
  return best;
}

/**
 * Copies `src` (a regular file, opened without following a symlink) into `dir` as
 * `<prefix>-<first 32 hex of its SHA-256>`: temp file, fsync, rename, fsync of the directory.
 * An existing file of that name and size is kept. Returns the file name.
 */
export async function copyContentAddressed(
  src: string,
  dir: string,
  prefix: string,
): Promise<string> {
  await mkdir(dir, { recursive: true });
  const tmp = join(dir, `.tmp-${randomBytes(6).toString('hex')}`);
  const input = await open(src, constants.O_RDONLY | constants.O_NOFOLLOW);
  const output = await open(tmp, 'wx', 0o644);
  const hash = createHash('sha256');
  let size = 0;
  try {
    if (!(await input.stat()).isFile())
      throw new FerryError('DEPLOY_NO_KERNEL', `${src} is not a regular file`);
    const buf = Buffer.alloc(1 << 20);
    for (;;) {
      const { bytesRead } = await input.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      size += bytesRead;
      if (size > MAX_KERNEL_BYTES)
        throw new FerryError('DEPLOY_NO_KERNEL', `${src} is larger than ${MAX_KERNEL_BYTES} bytes`);
      hash.update(buf.subarray(0, bytesRead));
      await output.write(buf, 0, bytesRead);
    }
    await output.sync();
  } catch (e) {
    await output.close();
    await rm(tmp, { force: true });
    throw e;
  } finally {
    await input.close();
  }
  await output.close();
  const name = `${prefix}-${hash.digest('hex').slice(0, 32)}`;
  const have = await lstat(join(dir, name)).catch(() => undefined);
  if (have?.isFile() && have.size === size) {
    await rm(tmp, { force: true });
    return name;
  }
  await rename(tmp, join(dir, name));
  await fsyncDir(dir);
  return name;
}
