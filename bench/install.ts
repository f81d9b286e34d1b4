/**
 * Install benchmark: Ferry's device agent installing bundles into a file-backed device, in one run.
 *
 *   node bench/install.ts [--quick] [--size-mib N] [--runs N] [--image FILE] [--no-seeds]
 *                         [--throttle-mbps N] [--cpu-prof DIR] [--json FILE]
 *
 * 1. Full install of a >= 1 GiB image against `dd` of the same image into the same partition
 *    (bs=4M, conv=notrunc,fsync), median of several runs, with wall and CPU seconds and Ferry's
 *    phases (from its install.progress events): open + plan, write (read bundle, decompress,
 *    verify, write, with the read-back of written regions running behind it), tail (fsync, then
 *    the rest of the read-back: SHA-256 and dm-verity), tree + commit. Three times: into the
 *    disk image file (page cache), into a direct-I/O loop block device over slot B (root only),
 *    and into that device with its writes capped at --throttle-mbps (100 MB/s: eMMC/SD-class
 *    storage; cgroup v1 blkio at the root group, so the kernel's writeback is capped too).
 * 2. Bytes read from the bundle for v1 -> v2 and v1 -> v3 of real Debian trees (`npm run
 *    bench:data`) when v1 sits in the other slot, per image format and compression.
 * 3. Peak RSS of `ferry install` (the CLI, a child process) installing the big image.
 *
 * The device is a sparse GPT disk image (sfdisk) under $FERRY_BENCH_TMP or /var/tmp. Dropping
 * caches is not possible here: before every timed run the input (image for dd, bundle for Ferry)
 * is read once so both come from the page cache, and `sync` runs so neither pays for the
 * other's dirty pages.
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { enableCompileCache } from 'node:module';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Agent, type AgentEvent, type InstallResult } from '@ferry/agent';
import { buildImage } from '@ferry/builder';
import { createBundle, FileSource } from '@ferry/core';
import { makeDevice, type DeviceFixture } from '@ferry/testing';
import { formatTable, haveTool, mbPerSec, round, run, timeIt, warmFile } from './lib.ts';

const MiB = 1024 * 1024;
const REPO = join(import.meta.dirname, '..');
const DATA = join(REPO, '.cache', 'bench-data');
const EPOCH = 1700000000;

/** Options of runInstallBench. */
export interface InstallBenchOptions {
  /** Small images and one run per side. */
  quick?: boolean;
  /** Use the first N MiB of the source image (default: all of it; 256 with quick). */
  sizeMiB?: number;
  /** Timed runs per side (default 3, quick 1). */
  runs?: number;
  /** Install this image instead of the default one (e.g. a squashfs, the realistic input). */
  image?: string;
  /** Skip the seed (v1 -> v2/v3) part. */
  noSeeds?: boolean;
  /** Write cap of the storage-bound row in MB/s (default 100; 0 skips the row). */
  throttleMBps?: number;
  /** Write a V8 CPU profile of the CLI install into this directory (perturbs its RSS and time). */
  cpuProfDir?: string;
  log?: (line: string) => void;
}

/** Seconds of one Ferry install, split at its progress events. */
export interface FerryPhases {
  total: number;
  plan: number;
  write: number;
  /** From the last write to the end of the read-back: fsync and what was left to read. */
  tail: number;
  commit: number;
  /** CPU seconds (user + system) of the whole process, worker threads included. */
  cpu: number;
  /** Of those, system (kernel) seconds: copies to and from the page cache, mostly. */
  sys: number;
}

/** One update with v1 in the other slot. */
export interface SeedRow {
  variant: string;
  update: string;
  imageBytes: number;
  bundleBytes: number;
  seconds: number;
  result: InstallResult;
}

/** dd, `zstd -d | dd` and Ferry into one target, runs alternating. */
export interface TargetRow {
  /** What the slot is: the disk image file (page cache) or a loop block device on it. */
  target: string;
  ddSeconds: number[];
  /** CPU seconds (user + system) of each dd run. */
  ddCpu: number[];
  ferry: FerryPhases[];
  ddMedian: number;
  ddCpuMedian: number;
  /** `zstd -d | dd`: decompress and write, no verification (the fairer peer). */
  zstdDdSeconds: number[];
  zstdDdMedian: number;
  ferryMedian: FerryPhases;
  /** dd seconds / Ferry seconds, medians (goal >= 0.8). */
  ddOverFerry: number;
  /** 1-, 5- and 15-minute load averages before the first run. */
  load: number[];
}

/** Everything runInstallBench measured. */
export interface InstallBenchResult extends TargetRow {
  image: string;
  imageBytes: number;
  bundleBytes: number;
  bundleSeconds: number;
  pageCacheWarmed: true;
  /** The same runs into a direct-I/O loop device over the slot (root and losetup only). */
  loop?: TargetRow;
  /** The loop device again with its writes capped (cgroup v1 blkio): storage-bound, as on a device. */
  throttled?: TargetRow;
  cli?: { seconds: number; maxRssMiB: number; tool: string };
  seeds: SeedRow[];
}

/** Room for the image, its verity tree (1/127 of it) and alignment. */
const slotBytesFor = (imageBytes: number) => imageBytes + Math.ceil(imageBytes / 64) + 8 * MiB;

/** Bundles `image` for the bench device. */
async function bundleFor(dev: DeviceFixture, image: string, out: string, counter: number) {
  await createBundle({
    images: [{ name: 'rootfs', path: image }],
    compatible: 'bench',
    version: `${counter}.0.0`,
    releaseCounter: counter,
    keys: [dev.key],
    out,
    created: '2026-01-01T00:00:00Z',
  });
  return (await stat(out)).size;
}

/** Agent.install in-process, timing its phases from the progress events. */
async function ferryInstall(root: string, bundle: string): Promise<[InstallResult, FerryPhases]> {
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const at: Partial<Record<'planned' | 'written' | 'verified', number>> = {};
  const onEvent = (e: AgentEvent) => {
    const now = performance.now();
    if (e.id === 'install.planned') at.planned = now;
    else if (e.id === 'install.progress' && e.phase === 'write') at.written = now;
    else if (e.id === 'install.progress' && e.phase === 'verify' && e.done === e.total)
      at.verified = now;
  };
  const source = new FileSource(bundle);
  try {
    const agent = await Agent.open({ root });
    const result = await agent.install(source, onEvent);
    const end = performance.now();
    const cpu = process.cpuUsage(cpu0);
    const s = (a = t0, b = end) => (b - a) / 1000;
    const phases = {
      total: s(),
      plan: s(t0, at.planned),
      write: s(at.planned, at.written),
      tail: s(at.written, at.verified),
      commit: s(at.verified, end),
      cpu: (cpu.user + cpu.system) / 1e6,
      sys: cpu.system / 1e6,
    };
    return [result, phases];
  } finally {
    await source.close();
  }
}

/** Runs a command under GNU time: wall seconds and CPU seconds (user + system, children included). */
async function timeCommand(cmd: string, args: string[]): Promise<{ seconds: number; cpu: number }> {
  if (!haveTool('/usr/bin/time')) {
    const { seconds } = await timeIt(() => run(cmd, args));
    return { seconds, cpu: NaN };
  }
  const { result, seconds } = await timeIt(() =>
    run('/usr/bin/time', ['-f', 'cpu %U %S', cmd, ...args]),
  );
  const m = /cpu ([\d.]+) ([\d.]+)\s*$/.exec(result.stderr);
  return { seconds, cpu: m ? Number(m[1]) + Number(m[2]) : NaN };
}

/** Where dd writes: a file or block device, at a byte offset. */
interface DdTarget {
  path: string;
  offset: number;
}

function ddInto(image: string, t: DdTarget) {
  return timeCommand('dd', [
    `if=${image}`,
    `of=${t.path}`,
    'bs=4M',
    `seek=${t.offset}`,
    'oflag=seek_bytes',
    'conv=notrunc,fsync',
    'status=none',
  ]);
}

/** The peer that does the work Ferry does minus verification: decompress a zstd image and write it. */
function zstdDdInto(zst: string, t: DdTarget) {
  return timeCommand('sh', [
    '-c',
    'zstd -dcq "$1" | dd of="$2" bs=4M seek="$3" oflag=seek_bytes iflag=fullblock conv=notrunc,fsync status=none',
    'sh',
    zst,
    t.path,
    String(t.offset),
  ]);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** The image to install: image-1g.ext4, else the chunking bench's 1 GiB image, else /usr. */
async function sourceImage(work: string, sizeMiB: number | undefined): Promise<string> {
  const candidates = [
    join(DATA, 'image-1g.ext4'),
    join(REPO, '.cache', 'bench', 'chunking-usr-1024MiB.img'),
  ];
  let src: string | undefined;
  for (const c of candidates) if (await stat(c).catch(() => undefined)) src ??= c;
  if (src && (sizeMiB === undefined || (await stat(src)).size >= sizeMiB * MiB)) {
    if (sizeMiB === undefined) return src;
    const out = join(work, `image-${sizeMiB}MiB.img`);
    await run('dd', [`if=${src}`, `of=${out}`, 'bs=1M', `count=${sizeMiB}`, 'status=none']);
    return out;
  }
  return usrImage(join(work, 'usr.img'), (sizeMiB ?? 1024) * MiB);
}

/** Fallback image: files of /usr, each padded to 4 KiB, until `size` bytes. */
async function usrImage(out: string, size: number): Promise<string> {
  const fh = await open(out, 'w');
  let written = 0;
  const files = (await readdir('/usr', { withFileTypes: true, recursive: true }))
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name))
    .sort();
  for (let i = 0; written < size; i = (i + 1) % files.length) {
    const data = await readFile(files[i]!).catch(() => Buffer.alloc(0));
    const padded = Buffer.alloc(Math.min(Math.ceil(data.length / 4096) * 4096, size - written));
    data.copy(padded, 0, 0, padded.length);
    await fh.write(padded);
    written += padded.length;
  }
  await fh.close();
  return out;
}

/** Alternating runs of dd, `zstd -d | dd` and Ferry into one target. */
async function targetRuns(
  name: string,
  inputs: { image: string; zst: string; bundle: string; root: string },
  t: DdTarget,
  runs: number,
  log: (l: string) => void,
): Promise<TargetRow> {
  const { image, zst, bundle, root } = inputs;
  const load = loadavg().map((x) => round(x, 2));
  const ddSeconds: number[] = [];
  const ddCpu: number[] = [];
  const zstdDdSeconds: number[] = [];
  const ferry: FerryPhases[] = [];
  for (let i = 0; i < runs; i++) {
    await warmFile(image);
    await run('sync', []);
    const dd = await ddInto(image, t);
    ddSeconds.push(dd.seconds);
    ddCpu.push(dd.cpu);
    await warmFile(zst);
    await run('sync', []);
    zstdDdSeconds.push((await zstdDdInto(zst, t)).seconds);
    await warmFile(bundle);
    await run('sync', []);
    const [, phases] = await ferryInstall(root, bundle);
    ferry.push(phases);
    log(
      `${name} run ${i + 1}: dd ${round(dd.seconds, 2)} s (cpu ${round(dd.cpu, 2)}), ferry ${round(phases.total, 2)} s (cpu ${round(phases.cpu, 2)}, sys ${round(phases.sys, 2)})`,
    );
  }
  const ferryMedian = ferry.find((f) => f.total === median(ferry.map((x) => x.total)))!;
  const ddMedian = median(ddSeconds);
  return {
    target: name,
    ddSeconds,
    ddCpu,
    ferry,
    ddMedian,
    ddCpuMedian: median(ddCpu),
    zstdDdSeconds,
    zstdDdMedian: median(zstdDdSeconds),
    ferryMedian,
    ddOverFerry: ddMedian / ferryMedian.total,
    load,
  };
}

/**
 * Points the device's slot B at a loop block device over its partition, opened with direct I/O
 * as a real device's partition would be (no second page cache under it). Returns the device and
 * a function that restores the config and detaches it.
 */
async function loopSlot(dev: DeviceFixture, p: { offset: number; size: number }) {
  const loop = (
    await run('losetup', [
      '--find',
      '--show',
      '--direct-io=on',
      '--offset',
      String(p.offset),
      '--sizelimit',
      String(p.size),
      dev.disk,
    ])
  ).stdout.trim();
  const node = join(dev.root, 'dev', 'slot-b');
  const rdev = (await stat(loop)).rdev;
  const minor = (rdev & 0xff) | ((rdev >> 12) & 0xfff00);
  const major = Math.floor(rdev / 256) & 0xfff;
  await run('mknod', [node, 'b', String(major), String(minor)]);
  const config = await readFile(dev.configPath, 'utf8');
  const slotB = `[slot.rootfs.1]\ndevice = "/dev/disk.img"\noffset = ${p.offset}\n`;
  if (!config.includes(slotB)) throw new Error('unexpected system.toml layout for slot B');
  await writeFile(
    dev.configPath,
    config.replace(slotB, '[slot.rootfs.1]\ndevice = "/dev/slot-b"\noffset = 0\n'),
  );
  const undo = async () => {
    await writeFile(dev.configPath, config);
    await rm(node, { force: true });
    await run('losetup', ['-d', loop]);
  };
  return { loop, undo, majMin: `${major}:${minor}` };
}

/** The cgroup v1 rule file that caps a block device's write rate for every writer. */
const THROTTLE = '/sys/fs/cgroup/blkio/blkio.throttle.write_bps_device';

/**
 * Caps the writes of block device `majMin` at `bytesPerSecond` (cgroup v1 blkio, root group: it
 * covers the kernel's writeback too), a storage-bound device's slot. Returns the undo, or a reason
 * when this host has no such control.
 */
async function throttleWrites(
  majMin: string,
  bytesPerSecond: number,
): Promise<{ undo: () => Promise<void> } | { skipped: string }> {
  try {
    await writeFile(THROTTLE, `${majMin} ${bytesPerSecond}\n`);
  } catch (e) {
    return { skipped: `no cgroup v1 blkio write throttle (${(e as Error).message})` };
  }
  const rules = await readFile(THROTTLE, 'utf8');
  if (!rules.includes(`${majMin} ${bytesPerSecond}`))
    return { skipped: `${THROTTLE} did not take the rule` };
  return { undo: () => writeFile(THROTTLE, `${majMin} 0\n`) };
}

/** Part 1 and 3: dd against Ferry on the big image, then the CLI under /usr/bin/time. */
async function fullInstall(work: string, o: InstallBenchOptions, log: (l: string) => void) {
  const image = o.image ?? (await sourceImage(work, o.sizeMiB ?? (o.quick ? 256 : undefined)));
  const imageBytes = (await stat(image)).size;
  const dev = await makeDevice({
    slotMiB: Math.ceil(slotBytesFor(imageBytes) / MiB),
    compatible: 'bench',
    parentDir: work,
  });
  log(`bundling ${image} (${round(imageBytes / 1e6)} MB)`);
  const bundle = join(work, 'big.fbd');
  const b = await timeIt(() => bundleFor(dev, image, bundle, 1));
  const target = dev.partitions.rootB!;
  const file = { path: dev.disk, offset: target.offset };
  await warmFile(image);
  await ddInto(image, file); // allocates the region once, for both sides
  const zst = join(work, 'image.zst');
  await run('zstd', ['-3', '-T0', '-qf', image, '-o', zst]); // untimed: the peer's "bundle"
  const runs = o.runs ?? (o.quick ? 1 : 3);
  const inputs = { image, zst, bundle, root: dev.root };
  const page = await targetRuns('file (page cache)', inputs, file, runs, log);
  let loop: TargetRow | undefined;
  let throttled: TargetRow | undefined;
  if (process.getuid?.() === 0 && haveTool('losetup') && haveTool('mknod')) {
    const l = await loopSlot(dev, target);
    try {
      loop = await targetRuns(
        `loop device (direct I/O)`,
        inputs,
        { path: l.loop, offset: 0 },
        runs,
        log,
      );
      const mbps = o.throttleMBps ?? 100;
      const cap = mbps > 0 ? await throttleWrites(l.majMin, mbps * 1e6) : { skipped: 'off' };
      if ('undo' in cap) {
        try {
          throttled = await targetRuns(
            `loop device (direct I/O), writes capped at ${mbps} MB/s (eMMC/SD-class storage)`,
            inputs,
            { path: l.loop, offset: 0 },
            runs,
            log,
          );
        } finally {
          await cap.undo();
        }
      } else log(`capped-storage row skipped: ${cap.skipped}`);
    } finally {
      await l.undo();
    }
  } else log('loop device row skipped: needs root, losetup and mknod');
  await warmFile(bundle);
  await run('sync', []);
  const cli = await cliInstall(dev.root, bundle, o.cpuProfDir);
  return {
    image,
    imageBytes,
    bundleBytes: b.result,
    bundleSeconds: b.seconds,
    pageCacheWarmed: true as const,
    ...page,
    ...(loop ? { loop } : {}),
    ...(throttled ? { throttled } : {}),
    cli,
  };
}

/** `ferry install` as a child process: wall time and peak RSS (GNU time, else VmHWM polling). */
async function cliInstall(root: string, bundle: string, cpuProfDir?: string) {
  const ferryBin = join(REPO, 'packages/cli/bin/ferry');
  const args = ['install', '--root', root, bundle];
  const gnuTime = haveTool('/usr/bin/time');
  const cmd = gnuTime ? '/usr/bin/time' : ferryBin;
  const { result, seconds } = await timeIt(
    () =>
      new Promise<{ stderr: string; hwmKiB: number }>((resolve, reject) => {
        const p = spawn(cmd, gnuTime ? ['-v', ferryBin, ...args] : args, {
          stdio: ['ignore', 'ignore', 'pipe'],
          env: cpuProfDir
            ? { ...process.env, NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${cpuProfDir}` }
            : process.env,
        });
        let stderr = '';
        let hwmKiB = 0;
        const poll = setInterval(() => {
          void readFile(`/proc/${p.pid}/status`, 'utf8')
            .then((s) => (hwmKiB = Math.max(hwmKiB, Number(/VmHWM:\s+(\d+)/.exec(s)?.[1] ?? 0))))
            .catch(() => undefined);
        }, 50);
        p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        p.on('error', reject);
        p.on('close', (c) => {
          clearInterval(poll);
          if (c === 0) resolve({ stderr, hwmKiB });
          else reject(new Error(`ferry install exited with ${c}: ${stderr.slice(-800)}`));
        });
      }),
  );
  const maxKiB = gnuTime
    ? Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(result.stderr)?.[1] ?? NaN)
    : result.hwmKiB;
  return { seconds, maxRssMiB: maxKiB / 1024, tool: gnuTime ? '/usr/bin/time -v' : 'VmHWM poll' };
}

interface Variant {
  name: string;
  build(tree: string, out: string): Promise<unknown>;
}

const VARIANTS: Variant[] = [
  {
    name: 'squashfs gzip (builder default)',
    build: (from, out) => buildImage({ from, out, format: 'squashfs', sourceDateEpoch: EPOCH }),
  },
  {
    name: 'squashfs lz4 (builder)',
    build: (from, out) =>
      buildImage({ from, out, format: 'squashfs', compression: 'lz4', sourceDateEpoch: EPOCH }),
  },
  {
    name: 'erofs none (builder)',
    build: (from, out) =>
      buildImage({ from, out, format: 'erofs', compression: 'none', sourceDateEpoch: EPOCH }),
  },
  {
    // Not a builder option: the builder's own flags plus -noI -noD -noF -noX.
    name: 'squashfs uncompressed (mksquashfs)',
    build: (from, out) =>
      run('mksquashfs', [
        ...[from, out, '-noappend', '-no-progress', '-quiet', '-no-recovery', '-reproducible'],
        ...[
          '-mkfs-time',
          String(EPOCH),
          '-all-time',
          String(EPOCH),
          '-noI',
          '-noD',
          '-noF',
          '-noX',
        ],
      ]),
  },
];

/** Part 2: per variant, v1 in slot B (booted, good), then v2 and v3 into A. */
async function seedUpdates(work: string, variants: Variant[], log: (l: string) => void) {
  const rows: SeedRow[] = [];
  for (const [vi, v] of variants.entries()) {
    const dir = join(work, `seeds-${vi}`);
    await mkdir(dir, { recursive: true });
    const images: string[] = [];
    for (const rel of ['v1', 'v2', 'v3']) {
      const out = join(dir, `${rel}.img`);
      await v.build(join(DATA, `rootfs-${rel}`), out);
      images.push(out);
    }
    const sizes = await Promise.all(images.map(async (p) => (await stat(p)).size));
    const dev = await makeDevice({
      slotMiB: Math.ceil(slotBytesFor(Math.max(...sizes)) / MiB),
      compatible: 'bench',
      parentDir: dir,
    });
    const bundles = images.map((p) => p.replace(/\.img$/, '.fbd'));
    const bundleSizes: number[] = [];
    for (const [i, p] of images.entries())
      bundleSizes.push(await bundleFor(dev, p, bundles[i]!, i + 1));
    await ferryInstall(dev.root, bundles[0]!); // into B, booted A
    await dev.boot('B');
    await (await Agent.open({ root: dev.root })).mark('booted', 'good');
    for (const i of [1, 2]) {
      const t0 = performance.now();
      const [result] = await ferryInstall(dev.root, bundles[i]!);
      const seconds = (performance.now() - t0) / 1000;
      const row = {
        variant: v.name,
        update: `v1 -> v${i + 1}`,
        imageBytes: sizes[i]!,
        bundleBytes: bundleSizes[i]!,
        seconds,
        result,
      };
      rows.push(row);
      log(`${v.name} ${row.update}: ${round(result.bundleBytesRead / 1e6, 2)} MB read`);
    }
    await rm(dir, { recursive: true, force: true });
  }
  return rows;
}

/**
 * Runs the three measurements and returns the figures.
 *
 * @example
 * console.log(formatInstallBench(await runInstallBench({ quick: true })));
 */
export async function runInstallBench(o: InstallBenchOptions = {}): Promise<InstallBenchResult> {
  for (const tool of ['dd', 'sfdisk', 'sync', 'zstd'])
    if (!haveTool(tool)) throw new Error(`${tool} is not installed (bash scripts/setup.sh)`);
  const log = o.log ?? (() => {});
  const base = process.env.FERRY_BENCH_TMP ?? '/var/tmp';
  const work = await mkdtemp(join(base, 'ferry-bench-install-'));
  try {
    const full = await fullInstall(work, o, log);
    const haveTrees = await stat(join(DATA, 'rootfs-v3')).catch(() => undefined);
    let seeds: SeedRow[] = [];
    if (!o.noSeeds && haveTrees && haveTool('mksquashfs') && haveTool('mkfs.erofs'))
      seeds = await seedUpdates(work, o.quick ? VARIANTS.slice(0, 1) : VARIANTS, log);
    else if (!o.noSeeds) log('seed part skipped: needs npm run bench:data, mksquashfs, mkfs.erofs');
    return { ...full, seeds };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

const mb = (n: number) => round(n / 1e6, 1);
const pct = (a: number, b: number) => `${round((100 * a) / b, 1)} %`;

/** One target's table: dd, its peer, Ferry and Ferry's phases, with CPU seconds. */
function formatTarget(r: TargetRow, imageBytes: number): string {
  const f = r.ferryMedian;
  // MB/s and the dd ratio only where a step covers the whole image.
  const row = (name: string, s: number, cpu: number | '', whole = true) => [
    name,
    round(s, 2),
    cpu === '' ? '' : round(cpu, 2),
    whole ? round(mbPerSec(imageBytes, s), 1) : '',
    whole ? round(r.ddMedian / s, 2) : '',
  ];
  return [
    `Target: ${r.target}; load average before the runs ${r.load.join(', ')}`,
    formatTable(
      ['step', 'seconds', 'CPU s', 'MB/s (image)', 'dd s / this s'],
      [
        row('dd bs=4M conv=notrunc,fsync', r.ddMedian, r.ddCpuMedian),
        row('zstd -d | dd (decompress + write, no verification)', r.zstdDdMedian, ''),
        row('ferry install (in-process), total', f.total, f.cpu),
        row('  open bundle + plan', f.plan, '', false),
        row('  write (read, decompress, verify, write; read-back behind it)', f.write, ''),
        row('  tail (fsync, rest of the read-back: SHA-256 + dm-verity)', f.tail, '', false),
        row('  verity tree + record + commit', f.commit, '', false),
      ],
    ),
    `all runs: dd ${r.ddSeconds.map((s) => round(s, 2)).join(', ')} s (CPU ${r.ddCpu.map((s) => round(s, 2)).join(', ')}); ferry ${r.ferry.map((p) => round(p.total, 2)).join(', ')} s (CPU ${r.ferry.map((p) => round(p.cpu, 2)).join(', ')})`,
    `dd / ferry = ${round(r.ddOverFerry, 2)} (goal >= 0.8); (zstd -d | dd) / ferry = ${round(r.zstdDdMedian / f.total, 2)}`,
  ].join('\n');
}

/** The result as tables with ratios. */
export function formatInstallBench(r: InstallBenchResult): string {
  const out = [
    `Full install vs dd (image ${r.image}, ${mb(r.imageBytes)} MB; bundle ${mb(r.bundleBytes)} MB, made in ${round(r.bundleSeconds, 1)} s; median of ${r.ddSeconds.length}; inputs read once before each run (page cache), sync before each run)`,
    formatTarget(r, r.imageBytes),
    ...(r.loop ? ['', formatTarget(r.loop, r.imageBytes)] : []),
    ...(r.throttled ? ['', formatTarget(r.throttled, r.imageBytes)] : []),
  ];
  if (r.cli)
    out.push(
      `ferry install (CLI process, incl. start-up): ${round(r.cli.seconds, 2)} s, ${round(r.ddMedian / r.cli.seconds, 2)} of dd into the file`,
    );
  if (r.cli)
    out.push(`peak RSS of ferry install (CLI, ${r.cli.tool}): ${round(r.cli.maxRssMiB, 1)} MiB`);
  if (r.seeds.length)
    out.push(
      '',
      'Update with v1 in the other slot (local seeds): bytes read from the bundle',
      formatTable(
        [
          'image',
          'update',
          'image MB',
          'bundle MB',
          'seeded MB',
          'fetched MB (raw)',
          'bundle read MB',
          'read/bundle',
          'read/image',
          's',
        ],
        r.seeds.map((s) => [
          s.variant,
          s.update,
          mb(s.imageBytes),
          mb(s.bundleBytes),
          mb(s.result.seededBytes),
          mb(s.result.fetchedBytes),
          round(s.result.bundleBytesRead / 1e6, 2),
          pct(s.result.bundleBytesRead, s.bundleBytes),
          pct(s.result.bundleBytesRead, s.imageBytes),
          round(s.seconds, 1),
        ]),
      ),
    );
  return out.join('\n');
}

if (import.meta.main) {
  // As under the ferry launcher: the install's workers start from Node's compile cache.
  enableCompileCache(process.env.NODE_COMPILE_CACHE ?? join(REPO, '.cache', 'node-compile-cache'));
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean' },
      'size-mib': { type: 'string' },
      runs: { type: 'string' },
      'no-seeds': { type: 'boolean' },
      image: { type: 'string' },
      'cpu-prof': { type: 'string' },
      'throttle-mbps': { type: 'string' },
      json: { type: 'string' },
    },
  });
  const r = await runInstallBench({
    quick: values.quick ?? false,
    ...(values['size-mib'] ? { sizeMiB: Number(values['size-mib']) } : {}),
    ...(values.runs ? { runs: Number(values.runs) } : {}),
    noSeeds: values['no-seeds'] ?? false,
    ...(values.image ? { image: values.image } : {}),
    ...(values['cpu-prof'] ? { cpuProfDir: values['cpu-prof'] } : {}),
    ...(values['throttle-mbps'] ? { throttleMBps: Number(values['throttle-mbps']) } : {}),
    log: (line) => console.error(line),
  });
  console.log(formatInstallBench(r));
  if (values.json) await writeFile(values.json, JSON.stringify(r, null, 2));
}
