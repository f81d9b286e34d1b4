/**
 * Power-cut safety: `ferry install` is killed with SIGKILL at every named step and at no fewer
 * than 200 random instants (FERRY_FAULT_INJECTIONS overrides the count). After each kill: the
 * booted slot is byte-identical, the state and bootloader files are readable, and the slot the
 * bootloader would boot next holds a good, verified system. Then a re-run must complete.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { imageLikeBytes, makeDevice, needs, type DeviceFixture } from '@ferry/testing';
import { Agent } from './agent.ts';
import { bootModel, FileBootloader } from './bootloader-file.ts';
import { FAULT_POINTS } from './fault.ts';

const sfdisk = needs('sfdisk');
const ferry = join(import.meta.dirname, '..', '..', 'cli', 'bin', 'ferry');
const injections = Number(process.env.FERRY_FAULT_INJECTIONS ?? 200);
let dev: DeviceFixture;
let v2: Buffer;
let bundle: string;
let bootedDigest: string;

interface Run {
  signal: NodeJS.Signals | null;
  code: number | null;
  lastEvent: string;
  ms: number;
}

/** Runs `ferry install`, optionally killing it after `killAfterMs`. */
function runInstall(
  opts: { killAfterMs?: number; fromFirstEvent?: boolean; env?: Record<string, string> } = {},
): Promise<Run & { firstEventMs: number }> {
  const start = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(ferry, ['install', '--json', '--root', dev.root, bundle], {
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let firstEventMs = -1;
    let timer: NodeJS.Timeout | undefined;
    const arm = () => (timer = setTimeout(() => child.kill('SIGKILL'), opts.killAfterMs));
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (firstEventMs < 0) {
        firstEventMs = Date.now() - start;
        if (opts.killAfterMs !== undefined && opts.fromFirstEvent) arm();
      }
    });
    if (opts.killAfterMs !== undefined && !opts.fromFirstEvent) arm();
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const last = out.trim().split('\n').at(-1) ?? '';
      let lastEvent = 'none';
      try {
        lastEvent = (JSON.parse(last) as { id?: string }).id ?? 'none';
      } catch {
        lastEvent = last ? 'partial-line' : 'none';
      }
      resolve({ signal, code, lastEvent, ms: Date.now() - start, firstEventMs });
    });
  });
}

/** The invariants that must hold after a kill at any instant. */
async function checkAfterCut(context: string): Promise<void> {
  assert.equal(
    await dev.digest('rootB'),
    bootedDigest,
    `${context}: the booted slot B is byte-identical`,
  );
  const agent = await Agent.open({ root: dev.root });
  await agent.state.load(); // throws STATE_INVALID if the state were torn
  const bl = agent.bootloader as FileBootloader;
  const next = bootModel(await bl.read()); // on a copy: the device is not actually booted here
  assert.ok(next === 'A' || next === 'B', `${context}: some slot boots (got ${String(next)})`);
  if (next === 'A') {
    const disk = await readFile(dev.disk);
    const a = dev.partitions.rootA!;
    assert.ok(
      disk.subarray(a.offset, a.offset + v2.length).equals(v2),
      `${context}: A is only bootable once it holds the verified v2`,
    );
  }
}

async function rerunCompletes(context: string): Promise<void> {
  const r = await runInstall();
  assert.equal(r.code, 0, `${context}: the re-run completes`);
  const agent = await Agent.open({ root: dev.root });
  assert.equal(
    await agent.bootloader.getPrimary(),
    'A',
    `${context}: after the re-run A is primary`,
  );
  const disk = await readFile(dev.disk);
  const a = dev.partitions.rootA!;
  assert.ok(disk.subarray(a.offset, a.offset + v2.length).equals(v2), `${context}: A holds v2`);
}

/** Deterministic PRNG so a failing instant can be replayed (seed printed in the diagnostics). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

before(async () => {
  if (sfdisk.skip) return;
  dev = await makeDevice({ slotMiB: 8 });
  const v1 = imageLikeBytes(3 * 1024 * 1024, 31);
  v2 = Buffer.from(v1);
  imageLikeBytes(300 * 1024, 32).copy(v2, 512 * 1024);
  await writeFile(join(dev.root, 'v1.img'), v1);
  await writeFile(join(dev.root, 'v2.img'), v2);
  // Provision: v1 into B, boot B, commit it. B is the running system for every cut below.
  const b1 = await dev.bundle(join(dev.root, 'v1.img'), { version: '1.0.0', counter: 1 });
  await (await Agent.open({ root: dev.root })).install(b1);
  assert.equal(
    await ((await Agent.open({ root: dev.root })).bootloader as FileBootloader).boot(),
    'B',
  );
  await dev.boot('B');
  assert.equal(
    (await (await Agent.open({ root: dev.root })).bootCheck({ reboot: false })).result,
    'good',
  );
  bootedDigest = await dev.digest('rootB');
  bundle = await dev.bundle(join(dev.root, 'v2.img'), { version: '1.1.0', counter: 2 });
});
after(() => dev?.cleanup());

describe('install under power cuts', () => {
  describe('when killed at every named step', () => {
    it('keeps the device bootable and a re-run completes', sfdisk, async () => {
      for (const point of FAULT_POINTS) {
        const r = await runInstall({ env: { FERRY_FAULT_AT: point } });
        assert.equal(r.signal, 'SIGKILL', `${point}: the fault point was reached`);
        await checkAfterCut(`after a cut at ${point}`);
        await rerunCompletes(`after a cut at ${point}`);
      }
    });
  });

  describe(`when killed at ${injections} random instants`, () => {
    it('keeps the device bootable every time and a re-run always completes', sfdisk, async (t) => {
      const seed = Number(process.env.FERRY_FAULT_SEED ?? Date.now() % 1e9);
      const random = mulberry32(seed);
      const baseline = await runInstall();
      assert.equal(baseline.code, 0);
      // A fifth of the cuts fall anywhere in the run (start-up included); the rest fall inside
      // the install's own work, measured from its first event.
      const span = baseline.ms * 1.1;
      const work = (baseline.ms - baseline.firstEventMs) * 1.1;
      let landed = 0;
      let tries = 0;
      const phases = new Map<string, number>();
      while (landed < injections && tries < injections * 3) {
        tries++;
        const anywhere = random() < 0.2;
        const at = Math.floor(random() * (anywhere ? span : work));
        const r = await runInstall({ killAfterMs: at, fromFirstEvent: !anywhere });
        if (r.signal !== 'SIGKILL') continue; // finished before the cut: not an injection
        landed++;
        phases.set(r.lastEvent, (phases.get(r.lastEvent) ?? 0) + 1);
        await checkAfterCut(`cut ${landed} at ${at} ms (seed ${seed}, after ${r.lastEvent})`);
        await rerunCompletes(`cut ${landed} at ${at} ms (seed ${seed})`);
      }
      t.diagnostic(
        `power cuts: ${landed} injected, 0 failures, seed ${seed}, install ~${baseline.ms} ms; last event before the cut: ${[...phases].map(([k, v]) => `${k} ${v}`).join(', ')}`,
      );
      assert.ok(
        landed >= injections,
        `only ${landed} of ${injections} cuts landed before the install ended`,
      );
    });
  });
});
