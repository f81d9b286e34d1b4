/**
 * The device side of rollouts: at check-in, the assignment a device gets (continuing its open
 * rollout, or joining a new one its phase has reached), signed by the director; and device
 * reports, applied so that every device ends a rollout with exactly one final state however
 * often, late or concurrently a report arrives.
 */
import type { Kysely } from 'kysely';
import { FerryError } from '@ferry/core';
import type { DeviceUpdateState, ReportRequest, SignedAssignment } from '@ferry/protocol';
import type { OpenRollout } from './checkin-store.ts';
import type { DeviceTable, FleetDb } from './db-schema.ts';
import { matchesFilter } from './device-filter.ts';
import { addEvent } from './devices.ts';
import { ASSIGNMENT_TTL_MS, type Director } from './director.ts';
import { getRollout, type ActiveRollout } from './rollouts.ts';
import { inPhase, inWindow, isFinal, reportApplies } from './rollout-plan.ts';

/** Rollouts in memory for the check-in path, reloaded when changed or after `ttlMs`. */
export class RolloutCache {
  #db: Kysely<FleetDb>;
  #ttlMs: number;
  #loaded = 0;
  #pending: Promise<ActiveRollout[]> | undefined;
  #rollouts: ActiveRollout[] = [];

  constructor(db: Kysely<FleetDb>, ttlMs = 1000) {
    this.#db = db;
    this.#ttlMs = ttlMs;
  }

  /** Forget what is cached (after any change to a rollout). */
  invalidate(): void {
    this.#loaded = 0;
  }

  /** Running, completed and paused rollouts, highest release counter first. */
  async get(now: number): Promise<ActiveRollout[]> {
    if (now - this.#loaded < this.#ttlMs) return this.#rollouts;
    return this.#reload(now);
  }

  /** Like get, without a promise while the cache is fresh (the check-in hot path). */
  current(now: number): ActiveRollout[] | Promise<ActiveRollout[]> {
    return now - this.#loaded < this.#ttlMs ? this.#rollouts : this.#reload(now);
  }

  async #reload(now: number): Promise<ActiveRollout[]> {
    this.#pending ??= this.#load().finally(() => (this.#pending = undefined));
    this.#rollouts = await this.#pending;
    this.#loaded = now;
    return this.#rollouts;
  }

  async #load(): Promise<ActiveRollout[]> {
    const rows = await this.#db
      .selectFrom('rollouts')
      .select('id')
      .where('state', 'in', ['running', 'completed', 'paused'])
      .execute();
    const all = await Promise.all(rows.map((r) => getRollout(this.#db, r.id)));
    return all.sort((a, b) => b.releaseCounter - a.releaseCounter);
  }
}

function assignment(
  director: Director,
  r: ActiveRollout,
  deviceId: string,
  nonce: string,
  now: number,
): SignedAssignment {
  return director.sign({
    type: 'ferry-assignment-v1',
    deviceId,
    rolloutId: r.row.id,
    compatible: r.compatible,
    version: r.version,
    manifestPath: r.manifestPath,
    manifestSha256: r.manifestSha256,
    manifestLength: r.manifestLength,
    releaseCounter: r.releaseCounter,
    ...(r.row.confirm === 1 ? { confirm: true } : {}),
    nonce,
    issuedAt: now,
    expiresAt: now + ASSIGNMENT_TTL_MS,
  });
}

function eligible(r: ActiveRollout, d: DeviceTable, now: number): boolean {
  if (r.row.state === 'paused') return false;
  if (d.channel !== r.row.channel || d.compatible !== r.compatible) return false;
  // Never offer what the device already runs or something older.
  if (d.release_counter !== null && d.release_counter >= r.releaseCounter) return false;
  if (!inPhase(d.bucket, r.row.salt, r.phases[r.row.phase] ?? 100)) return false;
  return inWindow(r.windows, now) && matchesFilter(d, r.filter);
}

/** Context of the check-in path. */
export interface AssignDeps {
  db: Kysely<FleetDb>;
  director: Director;
}

/**
 * The signed assignment for an accepted device checking in with request nonce `nonce`, or
 * null, given the active `rollouts` and the device's `open` rollout rows (read in the
 * check-in transaction). An open rollout row continues (unless cancelled, or paused before the
 * device started); otherwise the device joins the first eligible rollout.
 */
export async function assignmentFor(
  deps: AssignDeps,
  d: DeviceTable,
  rollouts: ActiveRollout[],
  open: OpenRollout[],
  nonce: string,
  now: number,
): Promise<SignedAssignment | null> {
  for (const o of open) {
    const r = rollouts.find((x) => x.row.id === o.rollout_id);
    if (!r || (r.row.state === 'paused' && o.state === 'assigned')) continue;
    return assignment(deps.director, r, d.id, nonce, now);
  }
  for (const r of rollouts) {
    if (!eligible(r, d, now)) continue;
    const ins = await deps.db
      .insertInto('rollout_devices')
      .values({
        rollout_id: r.row.id,
        device_id: d.id,
        state: 'assigned',
        progress: null,
        final: 0,
        updated_at: now,
      })
      .onConflict((oc) => oc.columns(['rollout_id', 'device_id']).doNothing())
      .returning('device_id')
      .executeTakeFirst();
    // No row inserted: the device already has its one row for this rollout (it ended).
    if (!ins) continue;
    await addEvent(deps.db, d.id, r.row.id, 'assigned', null, r.version, now);
    return assignment(deps.director, r, d.id, nonce, now);
  }
  return null;
}

/** Result of a report: the device's state in the rollout now, and whether this report changed it. */
export interface ReportResult {
  state: DeviceUpdateState;
  applied: boolean;
}

function milestone(prev: number | null, next: number | undefined): boolean {
  return next !== undefined && Math.floor(next / 25) !== Math.floor((prev ?? -1) / 25);
}

/**
 * Applies a device report; SERVER_NOT_FOUND if the device has no row in that rollout. One
 * transaction: the state change, its event and a commit's release land together, in one
 * commit.
 */
export function applyReport(
  db: Kysely<FleetDb>,
  deviceId: string,
  rep: ReportRequest,
  now: number,
): Promise<ReportResult> {
  return db.transaction().execute((tx) => applyReportIn(tx, deviceId, rep, now));
}

async function applyReportIn(
  db: Kysely<FleetDb>,
  deviceId: string,
  rep: ReportRequest,
  now: number,
): Promise<ReportResult> {
  const row = await db
    .selectFrom('rollout_devices')
    .select(['state', 'progress'])
    .where('rollout_id', '=', rep.rolloutId)
    .where('device_id', '=', deviceId)
    .executeTakeFirst();
  if (!row) throw new FerryError('SERVER_NOT_FOUND', `device is not in rollout ${rep.rolloutId}`);
  const current = row.state as DeviceUpdateState;
  if (!reportApplies(current, rep.state)) return { state: current, applied: false };
  const final = isFinal(rep.state);
  // Compare-and-set on the state read: of two racing final reports exactly one applies.
  const upd = await db
    .updateTable('rollout_devices')
    .set({
      state: rep.state,
      progress: rep.progress ?? null,
      final: final ? 1 : 0,
      updated_at: now,
    })
    .where('rollout_id', '=', rep.rolloutId)
    .where('device_id', '=', deviceId)
    .where('state', '=', current)
    .where('final', '=', 0)
    .executeTakeFirst();
  if (Number(upd.numUpdatedRows) !== 1) return applyReportIn(db, deviceId, rep, now);
  if (rep.state !== current || milestone(row.progress, rep.progress))
    await addEvent(
      db,
      deviceId,
      rep.rolloutId,
      rep.state,
      rep.progress ?? null,
      rep.errorCode ?? rep.detail ?? null,
      now,
    );
  if (rep.state === 'committed') await markCommitted(db, deviceId, rep.rolloutId);
  return { state: rep.state, applied: true };
}

async function markCommitted(
  db: Kysely<FleetDb>,
  deviceId: string,
  rolloutId: string,
): Promise<void> {
  const rel = await db
    .selectFrom('rollouts')
    .innerJoin('releases', 'releases.id', 'rollouts.release_id')
    .select(['releases.version', 'releases.release_counter'])
    .where('rollouts.id', '=', rolloutId)
    .executeTakeFirstOrThrow();
  await db
    .updateTable('devices')
    .set({ release: rel.version, release_counter: rel.release_counter })
    .where('id', '=', deviceId)
    .execute();
}
