/**
 * The rollout half of the server benchmark: a phased rollout (1 % -> 10 % -> 50 % -> 100 %)
 * to N simulated devices (`simulate`, real keys and protocol), run until every device has a
 * final state; then the database itself is counted: final states by kind, devices with none
 * (lost) and devices with more than one final event (doubled).
 */
import { loadavg } from 'node:os';
import { sql } from 'kysely';
import { AdminClient, openDatabase, simulate } from '@ferry/server';
import type { RolloutView } from '@ferry/protocol';
import type { ServerProcess } from './server.ts';

const PASSWORD = 'bench password 1';
const FINAL = ['committed', 'failed', 'rolled-back'];
const ROLLOUT = {
  name: 'bench',
  release: { compatible: 'bench', version: '2.0.0' },
  channel: 'stable',
  phases: [1, 10, 50, 100],
  successThreshold: 0.9,
  failureThreshold: 0.2,
  minReports: 20,
};

/** What the database holds after the rollout. */
async function audit(dbUrl: string, rolloutId: string) {
  const database = await openDatabase(dbUrl);
  try {
    const db = database.db;
    const byState = await db
      .selectFrom('rollout_devices')
      .select(['state', (eb) => eb.fn.countAll<number>().as('n')])
      .where('rollout_id', '=', rolloutId)
      .groupBy('state')
      .execute();
    const { n: lost } = await db
      .selectFrom('devices')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where((eb) =>
        eb.not(
          eb.exists(
            eb
              .selectFrom('rollout_devices')
              .select('device_id')
              .whereRef('rollout_devices.device_id', '=', 'devices.id')
              .where('final', '=', 1),
          ),
        ),
      )
      .executeTakeFirstOrThrow();
    const doubled = await sql<{ n: number }>`SELECT count(*) AS n FROM (
        SELECT device_id FROM device_events WHERE rollout_id = ${rolloutId}
        AND state IN ('committed', 'failed', 'rolled-back')
        GROUP BY device_id HAVING count(*) > 1) x`.execute(db);
    return {
      byState: Object.fromEntries(byState.map((r) => [r.state, Number(r.n)])),
      lost: Number(lost),
      doubled: Number(doubled.rows[0]?.n ?? 0),
    };
  } finally {
    await database.close();
  }
}

/**
 * Runs the rollout on `server` (over the database at `dbUrl`) with `devices` simulated devices
 * and returns one line of figures; stops the server.
 */
export async function rolloutRun(
  db: string,
  dbUrl: string,
  server: ServerProcess,
  devices: number,
): Promise<string> {
  const t0 = performance.now();
  const admin = new AdminClient(server.url);
  await admin.login('admin', PASSWORD);
  const { token } = await admin.post<{ token: string }>('/api/v1/enrolment-tokens', {
    uses: devices,
  });
  const ac = new AbortController();
  // The rollout starts once the fleet is enrolled: a phase with no devices yet counts as done.
  let ro: RolloutView | undefined;
  let started = 0;
  let enrolled = devices;
  const sim = simulate({
    server: server.url,
    devices,
    token,
    compatible: 'bench',
    intervalMs: 100,
    failRate: 0.01,
    rollbackRate: 0.01,
    concurrency: 64,
    signal: ac.signal,
    afterEnrol: async () => {
      enrolled = (await admin.get<{ total: number }>('/api/v1/devices?limit=1')).total;
      ro = await admin.post<RolloutView>('/api/v1/rollouts', ROLLOUT);
      started = performance.now();
    },
  });
  let v: RolloutView;
  let polls = 0;
  for (;;) {
    await new Promise((r) => setTimeout(r, 5000));
    if (!ro) continue;
    v = await admin.get<RolloutView>(`/api/v1/rollouts/${ro.id}`);
    const finals = FINAL.reduce((s, k) => s + (v.counts[k as 'committed'] ?? 0), 0);
    if (++polls % 6 === 0)
      console.error(
        `${db}: ${((performance.now() - t0) / 1000).toFixed(0)} s, phase ${v.phase}, ${finals} final`,
      );
    if (finals >= enrolled || v.state === 'paused' || v.state === 'cancelled') break;
  }
  ac.abort();
  const s = await sim;
  const serverCpu = server.cpuSeconds();
  const simCpu = process.cpuUsage();
  const wall = (performance.now() - t0) / 1000;
  const rolloutSecs = (performance.now() - started) / 1000;
  server.stop();
  await new Promise((r) => setTimeout(r, 500));
  const a = await audit(dbUrl, v.id);
  const agree =
    (a.byState.committed ?? 0) === s.committed &&
    (a.byState.failed ?? 0) === s.failed &&
    (a.byState['rolled-back'] ?? 0) === s.rolledBack;
  return (
    `${db}: rollout to ${devices} devices ended ${v.state}: ${wall.toFixed(0)} s in all, ` +
    `${(wall - rolloutSecs).toFixed(0)} s enrolling, ${rolloutSecs.toFixed(0)} s from start to the last final state ` +
    `(${s.enrolled} enrolled, ${s.checkins} check-ins, ${s.errors} request errors); ` +
    `final states ${JSON.stringify(a.byState)}; lost ${a.lost}, doubled ${a.doubled}; ` +
    `server and devices agree: ${agree}; CPU: server ${serverCpu.toFixed(0)} s, simulator ` +
    `${((simCpu.user + simCpu.system) / 1e6).toFixed(0)} s; load ${loadavg()[0]!.toFixed(2)}`
  );
}
