/**
 * Rollout decisions as pure functions over data (docs/server.md "Rollouts"): which phase reaches
 * a device, whether a maintenance window is open, what a device report may change, and what
 * a rollout does next given its counts. rollouts.ts only executes these decisions.
 */
import {
  DEVICE_UPDATE_STATES,
  FINAL_UPDATE_STATES,
  type DeviceUpdateState,
  type MaintenanceWindow,
} from '@ferry/protocol';

/** Buckets per fleet: a phase percentage p reaches buckets below p * 100. */
export const BUCKETS = 10000;

/** True if a device in `bucket` is inside the first `percent` % of a rollout with `salt`. */
export function inPhase(bucket: number, salt: number, percent: number): boolean {
  return (bucket + salt) % BUCKETS < percent * (BUCKETS / 100);
}

function minutes(hhmm: string): number {
  return Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5));
}

/**
 * True if `now` is inside one of `windows` (UTC). No windows: always open. A window whose end
 * is before its start runs past midnight into the next day.
 */
export function inWindow(windows: MaintenanceWindow[], now: number): boolean {
  if (windows.length === 0) return true;
  const d = new Date(now);
  const day = d.getUTCDay();
  const m = d.getUTCHours() * 60 + d.getUTCMinutes();
  return windows.some((w) => {
    const s = minutes(w.start);
    const e = minutes(w.end);
    if (s <= e) return w.days.includes(day) && m >= s && m < e;
    return (w.days.includes(day) && m >= s) || (w.days.includes((day + 6) % 7) && m < e);
  });
}

/** True for committed, failed and rolled-back. */
export function isFinal(state: string): boolean {
  return (FINAL_UPDATE_STATES as readonly string[]).includes(state);
}

/**
 * Whether a report moving a device from `current` to `next` is applied. A final state never
 * changes again (exactly one final status per device); progress never moves backwards
 * (a delayed "downloading" after "installing" is dropped); any final state may end progress.
 */
export function reportApplies(current: DeviceUpdateState, next: DeviceUpdateState): boolean {
  if (isFinal(current)) return false;
  if (isFinal(next)) return true;
  return DEVICE_UPDATE_STATES.indexOf(next) >= DEVICE_UPDATE_STATES.indexOf(current);
}

/** What a rollout knows when it is evaluated. */
export interface RolloutStats {
  phases: number[];
  phase: number;
  successThreshold: number;
  failureThreshold: number;
  minReports: number;
  /** Devices the rollout's filter selects inside the opened phases. */
  targetedInPhase: number;
  committed: number;
  /** failed + rolled back */
  bad: number;
  /** Final reports and bad ones acknowledged when an operator resumed after a pause. */
  ackFinal: number;
  ackBad: number;
  /** Devices with a row that is not final. */
  inProgress: number;
}

export type RolloutDecision =
  | { kind: 'none' }
  | { kind: 'advance'; phase: number }
  | { kind: 'complete' }
  | { kind: 'pause'; reason: string };

/**
 * The next step of a running rollout: pause when failures since the last resume pass the
 * threshold (judged once minReports final reports are in); advance when the committed share
 * of the opened phases reaches the success threshold; complete when the last phase has.
 */
export function decideRollout(s: RolloutStats): RolloutDecision {
  const finals = s.committed + s.bad - s.ackFinal;
  const bad = s.bad - s.ackBad;
  if (finals >= s.minReports && bad / finals > s.failureThreshold)
    return {
      kind: 'pause',
      reason: `failure threshold passed: ${bad} of ${finals} reports failed or rolled back`,
    };
  const needed = Math.ceil(s.successThreshold * s.targetedInPhase);
  if (s.committed < needed) return { kind: 'none' };
  const last = s.phase >= s.phases.length - 1;
  if (!last) return { kind: 'advance', phase: s.phase + 1 };
  return s.inProgress === 0 && s.targetedInPhase > 0 ? { kind: 'complete' } : { kind: 'none' };
}
