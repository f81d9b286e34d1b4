/**
 * What the device remembers of its fleet server between cycles and reboots (`fleet.json` in
 * the data directory): its enrolment, and the assignment it is working on with the last state
 * it reported, so the outcome (committed or rolled back) is reported after the reboot that
 * decides it. Written atomically; a file that is not ours is refused, never half-used.
 */
import { join } from 'node:path';
import { FerryError, pathExists, readBoundedFile, writeFileAtomic } from '@ferry/core';
import type { DeviceUpdateState, Inventory } from '@ferry/protocol';
import type { StatusReport } from './agent.ts';
import type { SystemConfig } from './config.ts';

/** A state a device reports (the server sets 'assigned' itself). */
export type ReportedState = Exclude<DeviceUpdateState, 'assigned'>;

/** The assignment being worked on. */
export interface FleetAssignment {
  rolloutId: string;
  version: string;
  releaseCounter: number;
  manifestSha256: string;
  /** The slot written for it, once the install has chosen one. */
  slot?: string;
  /** The last state reported to the server (or to be reported, if that failed). */
  state: ReportedState;
  /** When the install finished: a mark-good after it commits the assignment. */
  installedAt?: string;
}

/** fleet.json, version 1. */
export interface FleetState {
  version: 1;
  deviceId?: string;
  enrolment?: 'accepted' | 'pending';
  assignment?: FleetAssignment;
  lastCheckin?: string;
  /** The last outcome reported, kept for `ferry fleet status`. */
  lastOutcome?: { rolloutId: string; version: string; state: DeviceUpdateState; at: string };
}

const MAX_FLEET_STATE_BYTES = 64 * 1024;

export function fleetStatePath(config: SystemConfig): string {
  return join(config.dataDir, 'fleet.json');
}

/** Reads fleet.json; a missing file is a fresh state, a malformed one STATE_INVALID. */
export async function loadFleetState(config: SystemConfig): Promise<FleetState> {
  const path = fleetStatePath(config);
  if (!(await pathExists(path))) return { version: 1 };
  const { bytes } = await readBoundedFile(path, MAX_FLEET_STATE_BYTES, 'STATE_INVALID');
  let v: unknown;
  try {
    v = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw new FerryError('STATE_INVALID', `${path} is not JSON`, { cause: e });
  }
  const s = v as FleetState;
  if (typeof v !== 'object' || v === null || s.version !== 1)
    throw new FerryError('STATE_INVALID', `${path} is not a version 1 fleet state`);
  const a = s.assignment;
  if (
    a !== undefined &&
    (typeof a.rolloutId !== 'string' ||
      typeof a.manifestSha256 !== 'string' ||
      typeof a.state !== 'string')
  )
    throw new FerryError('STATE_INVALID', `${path}: malformed assignment`);
  return s;
}

export async function saveFleetState(config: SystemConfig, s: FleetState): Promise<void> {
  await writeFileAtomic(fleetStatePath(config), JSON.stringify(s, null, 2) + '\n', 0o600);
}

/** The agent's package version, reported in the inventory. */
export const AGENT_VERSION = '0.1.0';

/** What the device tells the server at every check-in, from its status. */
export function inventoryOf(s: StatusReport, config: SystemConfig): Inventory {
  const booted = s.slots.find((x) => x.booted);
  const rel = booted?.record?.release;
  return {
    compatible: s.compatible,
    ...(config.server?.hardwareId ? { hardwareId: config.server.hardwareId } : {}),
    agentVersion: AGENT_VERSION,
    ...(booted ? { bootedSlot: booted.name } : {}),
    ...(rel ? { releaseCounter: rel.releaseCounter } : {}),
    slots: s.slots
      .filter((x) => x.bootname !== undefined)
      .slice(0, 16)
      .map((x) => ({
        name: x.name,
        ...(x.record?.release
          ? { version: x.record.release.version, releaseCounter: x.record.release.releaseCounter }
          : {}),
        health:
          x.record?.status !== 'installed' ? 'unknown' : x.boot?.state === 'bad' ? 'bad' : 'good',
      })),
    attributes: { channel: s.channel },
  };
}
