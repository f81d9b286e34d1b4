/**
 * `ferry sim`: N simulated devices speaking the real protocol with real ed25519 keys. Each
 * enrols, checks in, and on an assignment (signature, device and nonce verified) reports
 * download progress, install and reboot, then commits, fails or rolls back at the given rates.
 */
import { FerryError } from '@ferry/core';
import { verifyAssignment, type DirectorKey, type Inventory } from '@ferry/protocol';
import { DeviceClient } from './device-client.ts';

/** Options of simulate. */
export interface SimOptions {
  server: string;
  devices: number;
  /** Enrolment token (devices stay pending without one). */
  token?: string;
  compatible?: string;
  /** Check-in rounds per device (default: until `signal` aborts). */
  rounds?: number;
  failRate?: number;
  rollbackRate?: number;
  /** Pause between a device's rounds, ms (default 1000). */
  intervalMs?: number;
  /** Devices acting at once (default 50). */
  concurrency?: number;
  signal?: AbortSignal;
  /** Runs once every device has enrolled, before the first check-in (e.g. start a rollout). */
  afterEnrol?: () => Promise<void>;
  onEvent?: (e: { deviceId: string; state: string; version?: string }) => void;
}

/** Totals of a simulation. */
export interface SimStats {
  enrolled: number;
  checkins: number;
  committed: number;
  failed: number;
  rolledBack: number;
  errors: number;
}

interface SimDevice {
  client: DeviceClient;
  inv: Inventory;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((res) => {
    const t = setTimeout(res, ms);
    signal?.addEventListener('abort', () => (clearTimeout(t), res()), { once: true });
  });

async function update(
  d: SimDevice,
  a: Awaited<ReturnType<typeof verifyAssignment>>,
  o: SimOptions,
  s: SimStats,
) {
  const rid = a.rolloutId;
  for (const progress of [0, 50, 100])
    await d.client.report({ rolloutId: rid, state: 'downloading', progress });
  await d.client.report({ rolloutId: rid, state: 'installing' });
  await d.client.report({ rolloutId: rid, state: 'rebooting' });
  const x = Math.random();
  const fail = o.failRate ?? 0;
  const state =
    x < fail ? 'failed' : x < fail + (o.rollbackRate ?? 0) ? 'rolled-back' : 'committed';
  await d.client.report({
    rolloutId: rid,
    state,
    ...(state === 'failed' ? { errorCode: 'INSTALL_VERIFY_FAILED' } : {}),
  });
  if (state === 'committed') {
    s.committed++;
    d.inv = {
      ...d.inv,
      releaseCounter: a.releaseCounter,
      slots: [{ name: 'a', version: a.version, releaseCounter: a.releaseCounter, health: 'good' }],
    };
  } else if (state === 'failed') s.failed++;
  else s.rolledBack++;
  o.onEvent?.({ deviceId: d.client.id, state, version: a.version });
}

async function round(d: SimDevice, keys: DirectorKey[], o: SimOptions, s: SimStats): Promise<void> {
  const r = await d.client.checkin(d.inv);
  s.checkins++;
  const env = r.body.assignment;
  if (!env) return;
  // The simulator has no TUF client: the target stands in for the one TUF would verify.
  const a = await verifyAssignment(env, {
    directorKeys: keys,
    deviceId: d.client.id,
    compatible: d.inv.compatible,
    nonce: r.nonce,
    installedCounter: d.inv.releaseCounter ?? 0,
    target: {
      path: env.signed.manifestPath,
      length: env.signed.manifestLength,
      sha256: env.signed.manifestSha256,
      custom: {
        compatible: env.signed.compatible,
        version: env.signed.version,
        releaseCounter: env.signed.releaseCounter,
      },
    },
  });
  await update(d, a, o, s);
}

/**
 * Runs the simulation; resolves with totals when every device has done its rounds (or the
 * signal aborts).
 *
 * @example
 * const stats = await simulate({ server: 'http://127.0.0.1:8080', devices: 100, token, rounds: 5, failRate: 0.02 });
 */
export async function simulate(o: SimOptions): Promise<SimStats> {
  const s: SimStats = {
    enrolled: 0,
    checkins: 0,
    committed: 0,
    failed: 0,
    rolledBack: 0,
    errors: 0,
  };
  const keyRes = await fetch(`${o.server.replace(/\/$/, '')}/api/v1/director/key`);
  if (!keyRes.ok) throw new FerryError('SERVER_NOT_FOUND', `no director key at ${o.server}`);
  const keys = [(await keyRes.json()) as DirectorKey];
  const devices: SimDevice[] = Array.from({ length: o.devices }, (_, i) => ({
    client: new DeviceClient(o.server),
    inv: {
      compatible: o.compatible ?? 'sim-device',
      hardwareId: `sim-${i}`,
      agentVersion: 'sim',
      bootedSlot: 'a',
      releaseCounter: 0,
      slots: [{ name: 'a', health: 'good' }],
      attributes: {},
    },
  }));
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < devices.length; i = next++) {
      const d = devices[i]!;
      // A busy server may drop a connection: try again (a new nonce each time) before giving up.
      for (let attempt = 0; attempt < 3; attempt++) {
        try {
          await d.client.enrol(d.inv, o.token);
          s.enrolled++;
          break;
        } catch {
          s.errors++;
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.concurrency ?? 50, devices.length) }, worker));
  await o.afterEnrol?.();
  for (let r = 0; (o.rounds === undefined || r < o.rounds) && !o.signal?.aborted; r++) {
    next = 0;
    const work = async () => {
      for (let i = next++; i < devices.length && !o.signal?.aborted; i = next++)
        await round(devices[i]!, keys, o, s).catch(() => s.errors++);
    };
    await Promise.all(Array.from({ length: Math.min(o.concurrency ?? 50, devices.length) }, work));
    if (o.rounds === undefined || r + 1 < o.rounds) await sleep(o.intervalMs ?? 1000, o.signal);
  }
  return s;
}
