/**
 * Read-only admin routes for the dashboard: fleet overview, releases, channels, groups and
 * rollouts with live phase progress. All need at least the viewer role.
 */
import type { Context } from 'hono';
import type { FleetOverview, RolloutView } from '@ferry/protocol';
import type { ServerContext } from './context.ts';
import { listReleases } from './releases.ts';
import { getRollout, rolloutView } from './rollouts.ts';
import type { Role } from '@ferry/protocol';

type Read = (path: string, min: Role, h: (c: Context) => Promise<Response>) => unknown;

async function overview(ctx: ServerContext): Promise<FleetOverview> {
  const db = ctx.db;
  const byStatus = await db
    .selectFrom('devices')
    .select(['status', (eb) => eb.fn.countAll<number>().as('n')])
    .groupBy('status')
    .execute();
  const byRelease = await db
    .selectFrom('devices')
    .select(['release', (eb) => eb.fn.countAll<number>().as('n')])
    .groupBy('release')
    .orderBy('release')
    .execute();
  const online = await db
    .selectFrom('devices')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('last_seen', '>', ctx.now() - 3600_000)
    .executeTakeFirstOrThrow();
  const rollouts = await db
    .selectFrom('rollouts')
    .select(['state', (eb) => eb.fn.countAll<number>().as('n')])
    .groupBy('state')
    .execute();
  const n = (s: string) => Number(rollouts.find((r) => r.state === s)?.n ?? 0);
  return {
    devices: {
      total: byStatus.reduce((a, r) => a + Number(r.n), 0),
      byStatus: Object.fromEntries(byStatus.map((r) => [r.status, Number(r.n)])),
      onlineLastHour: Number(online.n),
    },
    byRelease: byRelease.map((r) => ({ release: r.release, count: Number(r.n) })),
    rollouts: { running: n('running'), paused: n('paused') },
  };
}

/** Registers the read routes through `read` (which adds the session check). */
export function adminReadRoutes(ctx: ServerContext, read: Read): void {
  read('/overview', 'viewer', async (c) => c.json(await overview(ctx)));
  read('/releases', 'viewer', async (c) => c.json(await listReleases(ctx.db)));
  read('/channels', 'viewer', async (c) => {
    const rel = await ctx.db
      .selectFrom('channel_releases')
      .select(['channel', (eb) => eb.fn.countAll<number>().as('n')])
      .groupBy('channel')
      .execute();
    const dev = await ctx.db
      .selectFrom('devices')
      .select(['channel', (eb) => eb.fn.countAll<number>().as('n')])
      .groupBy('channel')
      .execute();
    const names = [...new Set([...rel.map((r) => r.channel), ...dev.map((d) => d.channel)])].sort();
    return c.json(
      names.map((channel) => ({
        channel,
        releases: Number(rel.find((r) => r.channel === channel)?.n ?? 0),
        devices: Number(dev.find((d) => d.channel === channel)?.n ?? 0),
      })),
    );
  });
  read('/rollouts', 'viewer', async (c) => {
    const rows = await ctx.db
      .selectFrom('rollouts')
      .select('id')
      .orderBy('created_at', 'desc')
      .limit(100)
      .execute();
    const views: RolloutView[] = [];
    for (const r of rows) views.push(await rolloutView(ctx.db, await getRollout(ctx.db, r.id)));
    return c.json(views);
  });
  read('/rollouts/:id', 'viewer', async (c) =>
    c.json(await rolloutView(ctx.db, await getRollout(ctx.db, c.req.param('id')!))),
  );
}
