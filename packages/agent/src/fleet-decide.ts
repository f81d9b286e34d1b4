/**
 * The decisions of a fleet cycle that need no network (fleet.ts runs them): where the
 * repository is, what TUF says the assigned target is, whether a slot holds the assigned
 * release, and how the assignment in progress ended.
 */
import { FerryError, isFerryError } from '@ferry/core';
import type { Assignment, VerifiedTarget } from '@ferry/protocol';
import type { Agent, StatusReport } from './agent.ts';
import type { SystemConfig } from './config.ts';
import type { FleetAssignment, ReportedState } from './fleet-state.ts';
import type { TufClient } from './tuf-client.ts';

/** The device's config with the repository the server names when system.toml sets none. */
export function withRepository(
  config: SystemConfig,
  fleetUrl: string,
  url: string | null,
): SystemConfig {
  if (config.update.repository || !url) return config;
  const repository = new URL(url, fleetUrl + '/').href.replace(/\/+$/, '');
  return { ...config, update: { ...config.update, repository } };
}

/** The TUF-verified target the assignment names (undefined when TUF lists none). */
export async function verifiedTarget(
  tuf: TufClient,
  path: string,
): Promise<VerifiedTarget | undefined> {
  try {
    const t = await tuf.getTargetInfo(path);
    const c = t.custom as { compatible?: unknown; version?: unknown; releaseCounter?: unknown };
    return {
      path: t.name,
      length: t.length,
      sha256: t.hashes.sha256 ?? '',
      custom: {
        compatible: String(c.compatible),
        version: String(c.version),
        releaseCounter: Number(c.releaseCounter),
      },
    };
  } catch (e) {
    if (isFerryError(e, 'TUF_TARGET_NOT_FOUND')) return undefined;
    throw e;
  }
}

/** The channel a manifest path is published in (`channels/<channel>/<compatible>/...`). */
export function channelOf(a: Assignment): string {
  const m = /^channels\/([a-z][a-z0-9-]{0,31})\//.exec(a.manifestPath);
  if (!m) throw new FerryError('DEVICE_ASSIGNMENT_MISMATCH', `${a.manifestPath} is in no channel`);
  return m[1]!;
}

/**
 * Whether a slot's release is the assigned one. Compared by version and release counter: the
 * assignment hashes the manifest's signed envelope, the slot record its content.
 */
export function holds(
  rel: { version: string; releaseCounter: number } | undefined,
  a: { version: string; releaseCounter: number },
): boolean {
  return rel?.version === a.version && rel.releaseCounter === a.releaseCounter;
}

/** The outcome of the assignment the device is working on, when the device has decided it. */
export function outcome(a: FleetAssignment, s: StatusReport): ReportedState | undefined {
  if (a.state !== 'rebooting' && a.state !== 'installing') return undefined;
  const slot = s.slots.find((x) => x.name === a.slot);
  if (!slot) return undefined;
  // Still staged, or committed and waiting for its reboot.
  if (s.stagedSlot === slot.name) return undefined;
  if (s.pendingSlot === slot.name) return a.state === 'installing' ? 'rebooting' : undefined;
  if (slot.booted) {
    const bad = slot.record?.markedBadAt;
    // A health check marked it bad: the device is about to reboot into the fallback.
    if (bad && a.state === 'rebooting' && (!a.installedAt || bad >= a.installedAt))
      return 'rolled-back';
    const good = slot.record?.markedGoodAt;
    const ours = holds(slot.record?.release, a);
    return ours && good && (!a.installedAt || good >= a.installedAt) ? 'committed' : undefined;
  }
  // Neither staged, nor pending, nor running: the bootloader or a health check gave it up.
  return a.state === 'rebooting' ? 'rolled-back' : undefined;
}

/** True while the assignment's slot is staged, pending its reboot, or booted awaiting its check. */
export function inFlight(a: FleetAssignment | undefined, s: StatusReport): boolean {
  if (!a?.slot || (a.state !== 'installing' && a.state !== 'rebooting')) return false;
  return (
    s.stagedSlot === a.slot ||
    s.pendingSlot === a.slot ||
    s.slots.some((x) => x.booted && x.name === a.slot)
  );
}

/** Reports the state of a release no install was needed for: a slot already holds it. */
export async function holderOf(agent: Agent, a: Assignment) {
  const s = await agent.status();
  const holder = s.slots.find(
    (x) =>
      holds(x.record?.release, a) &&
      (x.booted || x.name === s.pendingSlot || x.name === s.stagedSlot),
  );
  return { s, holder };
}

/** Sends download progress in 10 % steps, one report at a time, never blocking the install. */
export class ProgressReporter {
  readonly #send: (percent: number) => Promise<unknown>;
  #last = 0;
  #chain: Promise<unknown> = Promise.resolve();

  constructor(send: (percent: number) => Promise<unknown>) {
    this.#send = send;
  }

  update(done: number, total: number): void {
    if (total <= 0) return;
    const p = Math.min(99, Math.floor((done / total) * 10) * 10);
    if (p <= this.#last) return;
    this.#last = p;
    this.#chain = this.#chain.then(() => this.#send(p));
  }

  flush(): Promise<unknown> {
    return this.#chain;
  }
}
