/**
 * Everything the VM tests boot, built from nothing on the host and cached (see cache.ts):
 * Debian's kernel (`apt-get download linux-image-amd64`), two busybox initramfs images (good, and
 * one whose /init exits so the kernel panics), four releases built and signed by Ferry itself
 * (`ferry image build` + `ferry bundle create`: v1 and v2 good, v3 with a failing health check,
 * v4 whose kernel panics, v5 whose init hangs) and the GPT disk with GRUB whose slot A Ferry provisioned with v1.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { cacheDir, cached, exec, ferrySourcesHash, hashFiles, REPO, withLock } from './cache.ts';
import { readLayout, type DiskLayout } from './disk-state.ts';

const SCRIPTS = join(REPO, 'packages', 'vm', 'scripts');
const GUEST = join(REPO, 'packages', 'vm', 'guest');
const FERRY = join(REPO, 'packages', 'cli', 'bin', 'ferry');
const EPOCH = '1704067200';

/** One release the tests install. */
export interface ReleaseSpec {
  name: string;
  version: string;
  counter: number;
  variant: 'good' | 'bad-health' | 'panic' | 'hang';
}

/** The releases: v1 is provisioned in slot A, the others are served to the guest. */
export const RELEASES: readonly ReleaseSpec[] = [
  { name: 'v1', version: '1.0.0', counter: 1, variant: 'good' },
  { name: 'v2', version: '2.0.0', counter: 2, variant: 'good' },
  { name: 'v3', version: '3.0.0', counter: 3, variant: 'bad-health' },
  { name: 'v4', version: '4.0.0', counter: 4, variant: 'panic' },
  { name: 'v5', version: '5.0.0', counter: 5, variant: 'hang' },
];

/** Paths of the built artefacts. */
export interface Artefacts {
  cache: string;
  /** The provisioned disk: slot A holds v1 on trial (3 attempts), B is empty and marked bad. */
  disk: string;
  layout: DiskLayout;
  /** Bundle file per release name (`v1`..`v5`). */
  bundles: Record<string, string>;
  /** Seconds each step took in this run (0 = cached). */
  timings: Record<string, number>;
}

function aptCandidate(pkg: string): string {
  const r = spawnSync('apt-cache', ['policy', pkg], { encoding: 'utf8' });
  return /Candidate:\s*(\S+)/.exec(r.stdout ?? '')?.[1] ?? 'unknown';
}

/**
 * Builds what is missing or stale and returns the paths; cached artefacts cost nothing.
 *
 * @example
 * const a = await ensureArtefacts();
 * copyDisk(a.disk, 'run/disk.img');
 */
export function ensureArtefacts(): Promise<Artefacts> {
  const cache = cacheDir();
  return mkdir(join(cache, 'logs'), { recursive: true }).then(() =>
    withLock(cache, () => buildAll(cache)),
  );
}

/** The bootloader of a UEFI disk (OVMF firmware): GRUB-EFI, or systemd-boot. */
export type EfiLoader = 'grub' | 'systemd-boot';

/**
 * The artefacts with a UEFI disk instead of the BIOS one (`scripts/build-disk-efi.sh`): the same
 * partitions, slot A provisioned by Ferry with v1, the boot partition an ESP (FAT32) holding
 * `EFI/BOOT/BOOTX64.EFI` of `loader`. Cached as `disk-efi-<loader>/`.
 *
 * @example
 * const a = await ensureEfiArtefacts('grub');
 * Vm.start({ disk: copyOf(a.disk), log, firmware: 'ovmf' });
 */
export function ensureEfiArtefacts(loader: EfiLoader): Promise<Artefacts> {
  const cache = cacheDir();
  return mkdir(join(cache, 'logs'), { recursive: true }).then(() =>
    withLock(cache, async () => {
      const a = await buildAll(cache);
      const name = `disk-efi-${loader}`;
      const log = join(cache, 'logs', `${name}.log`);
      const v1 = join(cache, 'release-v1');
      await cached(
        cache,
        {
          name,
          recipe: [
            readFileSync(`${v1}.stamp`, 'utf8'),
            ferrySourcesHash(),
            hashFiles([
              join(SCRIPTS, 'build-disk-efi.sh'),
              join(SCRIPTS, 'grub-cfg.sh'),
              join(REPO, 'contrib', 'grub', 'ferry-ab.cfg'),
            ]),
            aptCandidate(loader === 'grub' ? 'grub-efi-amd64-bin' : 'systemd-boot-efi'),
          ].join('\n'),
          build: (out) =>
            exec(
              'bash',
              [
                join(SCRIPTS, 'build-disk-efi.sh'),
                loader,
                join(out, 'disk.img'),
                join(v1, 'release.fbd'),
                join(cache, 'key', 'release.pub'),
              ],
              log,
            ),
        },
        a.timings,
      );
      const disk = join(cache, name, 'disk.img');
      return { ...a, disk, layout: readLayout(`${disk}.layout`) };
    }),
  );
}

/** Paths of the boot artefacts alone (kernel, initramfs), for scenarios that build their own disk. */
export interface BootArtefacts {
  cache: string;
  /** `vmlinuz`, `version` and `root/lib/modules/<version>`. */
  kernelDir: string;
  /** The good busybox initramfs (gzip'd newc cpio). */
  initrd: string;
  /** Seconds each step took in this run (0 = cached). */
  timings: Record<string, number>;
}

/**
 * Builds (or reuses) only the kernel and the initramfs images, not the releases and the A/B disk:
 * what S6 (deployments) needs, so it does not wait for four Node root images.
 *
 * @example
 * const { kernelDir, initrd } = await ensureBootArtefacts();
 */
export function ensureBootArtefacts(): Promise<BootArtefacts> {
  const cache = cacheDir();
  return mkdir(join(cache, 'logs'), { recursive: true }).then(() =>
    withLock(cache, async () => {
      const timings: Record<string, number> = {};
      await buildBoot(cache, timings);
      const initrd = join(cache, 'initrd-good', 'initrd.img');
      return { cache, kernelDir: join(cache, 'kernel'), initrd, timings };
    }),
  );
}

/** The kernel and both initramfs images; returns their recipe hashes. */
async function buildBoot(cache: string, timings: Record<string, number>) {
  const log = (name: string) => join(cache, 'logs', `${name}.log`);
  const at = (name: string) => join(cache, name);
  const kernel = await cached(
    cache,
    {
      name: 'kernel',
      recipe: hashFiles([join(SCRIPTS, 'build-kernel.sh')]) + aptCandidate('linux-image-amd64'),
      build: (out) => exec('bash', [join(SCRIPTS, 'build-kernel.sh'), out], log('kernel')),
    },
    timings,
  );
  const initrd = (name: string, init: string) =>
    cached(
      cache,
      {
        name,
        recipe: kernel + hashFiles([join(SCRIPTS, 'build-initramfs.sh'), join(GUEST, init)]),
        build: (out) =>
          exec(
            'bash',
            [
              join(SCRIPTS, 'build-initramfs.sh'),
              at('kernel'),
              join(GUEST, init),
              join(out, 'initrd.img'),
            ],
            log(name),
          ),
      },
      timings,
    );
  const [good, panic] = await Promise.all([
    initrd('initrd-good', 'initramfs-init'),
    initrd('initrd-panic', 'initramfs-panic'),
  ]);
  return { kernel, good, panic };
}

async function buildAll(cache: string): Promise<Artefacts> {
  const timings: Record<string, number> = {};
  const log = (name: string) => join(cache, 'logs', `${name}.log`);
  const at = (name: string) => join(cache, name);
  const { good, panic } = await buildBoot(cache, timings);
  const key = await cached(
    cache,
    {
      name: 'key',
      recipe: 'ed25519 release key, generation 1',
      build: (out) => exec(FERRY, ['key', 'generate', join(out, 'release')], log('key')),
    },
    timings,
  );
  const base =
    ferrySourcesHash() + hashFiles([join(SCRIPTS, 'build-rootfs.sh'), join(GUEST, 'rootfs-init')]);
  const stamps = await Promise.all(
    RELEASES.map((r) =>
      cached(
        cache,
        {
          name: `release-${r.name}`,
          recipe: [base, r.variant === 'panic' ? panic : good, key, JSON.stringify(r)].join('\n'),
          build: (out) => buildRelease(cache, r, out, log(`release-${r.name}`)),
        },
        timings,
      ),
    ),
  );
  await cached(
    cache,
    {
      name: 'disk',
      recipe: [
        stamps[0],
        ferrySourcesHash(),
        hashFiles([
          join(SCRIPTS, 'build-disk.sh'),
          join(SCRIPTS, 'grub-cfg.sh'),
          join(REPO, 'contrib', 'grub', 'ferry-ab.cfg'),
        ]),
      ].join('\n'),
      build: (out) =>
        exec(
          'bash',
          [
            join(SCRIPTS, 'build-disk.sh'),
            join(out, 'disk.img'),
            join(at('release-v1'), 'release.fbd'),
            join(at('key'), 'release.pub'),
          ],
          log('disk'),
        ),
    },
    timings,
  );
  const disk = join(at('disk'), 'disk.img');
  const bundles = Object.fromEntries(
    RELEASES.map((r) => [r.name, join(at(`release-${r.name}`), 'release.fbd')]),
  );
  return { cache, disk, layout: readLayout(`${disk}.layout`), bundles, timings };
}

/** Staging tree (build-rootfs.sh), image (`ferry image build`), signed bundle (`ferry bundle create`). */
async function buildRelease(
  cache: string,
  r: ReleaseSpec,
  out: string,
  log: string,
): Promise<void> {
  const stage = join(out, 'stage');
  const initrd = join(cache, r.variant === 'panic' ? 'initrd-panic' : 'initrd-good', 'initrd.img');
  const variant = r.variant === 'panic' ? 'good' : r.variant;
  const pub = join(cache, 'key', 'release.pub');
  await exec(
    'bash',
    [
      join(SCRIPTS, 'build-rootfs.sh'),
      stage,
      r.version,
      variant,
      join(cache, 'kernel'),
      initrd,
      pub,
    ],
    log,
  );
  const image = join(out, 'rootfs.sqfs');
  await exec(
    FERRY,
    [
      'image',
      'build',
      '--from',
      stage,
      '--out',
      image,
      '--compression',
      'gzip',
      '--source-date-epoch',
      EPOCH,
    ],
    log,
  );
  await rm(stage, { recursive: true, force: true });
  await exec(
    FERRY,
    [
      ...['bundle', 'create', '--image', `rootfs=${image}`, '--compatible', 'ferry-vm-x86_64'],
      ...['--version', r.version, '--release-counter', String(r.counter)],
      ...['--key', join(cache, 'key', 'release.key'), '--out', join(out, 'release.fbd')],
      ...['--created', '2024-01-01T00:00:00Z'],
    ],
    log,
  );
  await rm(image, { force: true });
}
