/**
 * Rollouts as stored: create, pause/resume/cancel, the per-device rows, and `evaluate`, which
 * executes rollout-plan.ts' decision for every running rollout. The check-in path (assign.ts)
 * reads active rollouts through `RolloutCache`.
 */
import { randomBytes, randomInt } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { FerryError } from '@ferry/core';
import {
  DEVICE_UPDATE_STATES,
  type DeviceFilter,
  type MaintenanceWindow,
  type RolloutCreate,
  type RolloutView,
  type StateCounts,
} from '@ferry/protocol';
import type { FleetDb, RolloutTable } from './db-schema.ts';
import { whereFilter } from './device-filter.ts';
import { BUCKETS, decideRollout, type RolloutDecision } from './rollout-plan.ts';

/** A rollout row with its JSON fields parsed and its release joined. */
export interface ActiveRollout {
  row: RolloutTable;
  filter: DeviceFilter;
  phases: number[];
  windows: MaintenanceWindow[];
  compatible: string;
  version: string;
  releaseCounter: number;
  manifestPath: string;
  manifestSha256: string;
  manifestLength: number;
}

/** Selects the devices a rollout targets: its channel, its release's compatible, its filter. */
function targetQuery(db: Kysely<FleetDb>, r: ActiveRollout, percent?: number) {
  let q = db
    .selectFrom('devices')
    .where('devices.status', '=', 'accepted')
    .where('devices.channel', '=', r.row.channel)
    .where('devices.compatible', '=', r.compatible)
    .where((eb) => whereFilter(eb, r.filter));
  if (percent !== undefined)
    q = q.where(
      sql<boolean>`(${sql.ref('devices.bucket')} + ${r.row.salt}) % ${BUCKETS} < ${percent * (BUCKETS / 100)}`,
    );
  return q;
}

async function loadRollout(db: Kysely<FleetDb>, row: RolloutTable): Promise<ActiveRollout> {
  const rel = await db
    .selectFrom('releases')
    .innerJoin('channel_releases', 'channel_releases.release_id', 'releases.id')
    .select([
      'compatible',
      'version',
      'release_counter',
      'manifest_sha256',
      'manifest_length',
      'manifest_path',
    ])
    .where('releases.id', '=', row.release_id)
    .where('channel_releases.channel', '=', row.channel)
    .executeTakeFirstOrThrow();
  return {
    row,
    filter: JSON.parse(row.filter) as DeviceFilter,
    phases: JSON.parse(row.phases) as number[],
    windows: JSON.parse(row.windows) as MaintenanceWindow[],
    compatible: rel.compatible,
    version: rel.version,
    releaseCounter: rel.release_counter,
    manifestPath: rel.manifest_path,
    manifestSha256: rel.manifest_sha256,
    manifestLength: rel.manifest_length,
  };
}

/** Loads one rollout; SERVER_NOT_FOUND if none. */
export async function getRollout(db: Kysely<FleetDb>, id: string): Promise<ActiveRollout> {
  const row = await db.selectFrom('rollouts').selectAll().where('id', '=', id).executeTakeFirst();
  if (!row) throw new FerryError('SERVER_NOT_FOUND', `no rollout ${id}`);
  return loadRollout(db, row);
}

/** Rollouts that assign devices: running, and completed (latecomers still get the release). */
export async function activeRollouts(db: Kysely<FleetDb>): Promise<ActiveRollout[]> {
  const rows = await db
    .selectFrom('rollouts')
    .selectAll()
    .where('state', 'in', ['running', 'completed'])
    .orderBy('created_at')
    .execute();
  return Promise.all(rows.map((r) => loadRollout(db, r)));
}

/** Creates a running rollout; SERVER_NOT_FOUND unless the release is in the channel. */
export async function createRollout(
  db: Kysely<FleetDb>,
  body: RolloutCreate,
  username: string,
  now: number,
): Promise<string> {
  const phases = [...body.phases];
  if (phases.some((p, i) => i > 0 && p <= phases[i - 1]!) || phases.at(-1) !== 100)
    throw new FerryError('SERVER_BAD_REQUEST', 'phases must ascend and end at 100');
  const releaseId = `${body.release.compatible}@${body.release.version}`;
  const inChannel = await db
    .selectFrom('channel_releases')
    .select('release_id')
    .where('release_id', '=', releaseId)
    .where('channel', '=', body.channel)
    .executeTakeFirst();
  if (!inChannel)
    throw new FerryError(
      'REPO_RELEASE_NOT_FOUND',
      `${releaseId} is not in channel ${body.channel}`,
    );
  const id = 'r_' + randomBytes(9).toString('base64url');
  await db
    .insertInto('rollouts')
    .values({
      id,
      name: body.name,
      release_id: releaseId,
      channel: body.channel,
      filter: JSON.stringify(body.filter),
      phases: JSON.stringify(phases),
      phase: 0,
      state: 'running',
      pause_reason: null,
      success_threshold: body.successThreshold,
      failure_threshold: body.failureThreshold,
      min_reports: body.minReports,
      windows: JSON.stringify(body.windows),
      confirm: body.confirm ? 1 : 0,
      // A per-rollout offset, so the same devices are not always the first 1 %.
      salt: randomInt(BUCKETS),
      ack_final: 0,
      ack_bad: 0,
      created_by: username,
      created_at: now,
      updated_at: now,
    })
    .execute();
  return id;
}

const TRANSITIONS: Record<
  'pause' | 'resume' | 'cancel',
  { from: string[]; to: RolloutTable['state'] }
> = {
  pause: { from: ['running'], to: 'paused' },
  resume: { from: ['paused'], to: 'running' },
  cancel: { from: ['running', 'paused', 'completed'], to: 'cancelled' },
};

/** Pauses, resumes or cancels by hand; SERVER_CONFLICT from a state that does not allow it. */
export async function changeRolloutState(
  db: Kysely<FleetDb>,
  id: string,
  action: 'pause' | 'resume' | 'cancel',
  now: number,
): Promise<void> {
  const t = TRANSITIONS[action];
  const counts = action === 'resume' ? await stateCounts(db, id) : undefined;
  const set: Partial<RolloutTable> = {
    state: t.to,
    updated_at: now,
    pause_reason: action === 'pause' ? 'paused by an operator' : null,
  };
  // Resuming acknowledges the failures so far: the threshold then judges new reports only.
  if (counts) {
    set.ack_bad = counts.failed + counts['rolled-back'];
    set.ack_final = set.ack_bad + counts.committed;
  }
  const r = await db
    .updateTable('rollouts')
    .set(set)
    .where('id', '=', id)
    .where('state', 'in', t.from as RolloutTable['state'][])
    .executeTakeFirst();
  if (Number(r.numUpdatedRows) === 0) {
    await getRollout(db, id);
    throw new FerryError('SERVER_CONFLICT', `rollout ${id} cannot ${action} in its current state`);
  }
}

/** Devices of a rollout by state. */
export async function stateCounts(db: Kysely<FleetDb>, rolloutId: string): Promise<StateCounts> {
  const rows = await db
    .selectFrom('rollout_devices')
    .select(['state', (eb) => eb.fn.countAll<number>().as('n')])
    .where('rollout_id', '=', rolloutId)
    .groupBy('state')
    .execute();
  const counts = Object.fromEntries(DEVICE_UPDATE_STATES.map((s) => [s, 0])) as StateCounts;
  for (const r of rows) counts[r.state as keyof StateCounts] = Number(r.n);
  return counts;
}

async function countTargets(
  db: Kysely<FleetDb>,
  r: ActiveRollout,
  percent?: number,
): Promise<number> {
  const { n } = await targetQuery(db, r, percent)
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(n);
}

/** The API view of a rollout with live counts. */
export async function rolloutView(db: Kysely<FleetDb>, r: ActiveRollout): Promise<RolloutView> {
  const counts = await stateCounts(db, r.row.id);
  const finals = counts.committed + counts.failed + counts['rolled-back'];
  return {
    id: r.row.id,
    name: r.row.name,
    compatible: r.compatible,
    version: r.version,
    channel: r.row.channel,
    filter: r.filter,
    phases: r.phases,
    phase: r.row.phase,
    state: r.row.state,
    pauseReason: r.row.pause_reason,
    successThreshold: r.row.success_threshold,
    failureThreshold: r.row.failure_threshold,
    minReports: r.row.min_reports,
    windows: r.windows,
    confirm: r.row.confirm === 1,
    counts,
    targeted: await countTargets(db, r),
    targetedInPhase: await countTargets(db, r, r.phases[r.row.phase] ?? 100),
    failureRate: finals ? (counts.failed + counts['rolled-back']) / finals : 0,
    createdBy: r.row.created_by,
    createdAt: r.row.created_at,
    updatedAt: r.row.updated_at,
  };
}

async function applyDecision(
  db: Kysely<FleetDb>,
  r: ActiveRollout,
  d: RolloutDecision,
  now: number,
): Promise<void> {
  if (d.kind === 'none') return;
  const set: Partial<RolloutTable> =
    d.kind === 'advance'
      ? { phase: d.phase }
      : d.kind === 'complete'
        ? { state: 'completed' }
        : { state: 'paused', pause_reason: d.reason };
  // Conditional on the state and phase read: a concurrent pause by hand wins.
  await db
    .updateTable('rollouts')
    .set({ ...set, updated_at: now })
    .where('id', '=', r.row.id)
    .where('state', '=', 'running')
    .where('phase', '=', r.row.phase)
    .execute();
}

/** Evaluates every running rollout once; returns what was decided per rollout id. */
export async function evaluateRollouts(
  db: Kysely<FleetDb>,
  now: number,
): Promise<Map<string, RolloutDecision>> {
  const out = new Map<string, RolloutDecision>();
  for (const r of await activeRollouts(db)) {
    if (r.row.state !== 'running') continue;
    const c = await stateCounts(db, r.row.id);
    const d = decideRollout({
      phases: r.phases,
      phase: r.row.phase,
      successThreshold: r.row.success_threshold,
      failureThreshold: r.row.failure_threshold,
      minReports: r.row.min_reports,
      targetedInPhase: await countTargets(db, r, r.phases[r.row.phase] ?? 100),
      committed: c.committed,
      bad: c.failed + c['rolled-back'],
      ackFinal: r.row.ack_final,
      ackBad: r.row.ack_bad,
      inProgress: c.assigned + c.downloading + c.installing + c.rebooting,
    });
    await applyDecision(db, r, d, now);
    out.set(r.row.id, d);
  }
  return out;
}
