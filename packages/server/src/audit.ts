/** The audit log: one row per admin action, written by the admin routes, read by admins. */
import type { Kysely } from 'kysely';
import type { AuditEntry, Page } from '@ferry/protocol';
import type { FleetDb } from './db-schema.ts';

/** Records that `username` did `action` on `target`. */
export async function audit(
  db: Kysely<FleetDb>,
  username: string,
  action: string,
  target: string | null,
  detail: unknown,
  now: number,
): Promise<void> {
  await db
    .insertInto('audit_log')
    .values({ at: now, username, action, target, detail: JSON.stringify(detail ?? null) })
    .execute();
}

/** Newest entries first. */
export async function listAudit(
  db: Kysely<FleetDb>,
  limit: number,
  offset: number,
): Promise<Page<AuditEntry>> {
  const rows = await db
    .selectFrom('audit_log')
    .selectAll()
    .orderBy('id', 'desc')
    .limit(limit)
    .offset(offset)
    .execute();
  const { n } = await db
    .selectFrom('audit_log')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirstOrThrow();
  return {
    items: rows.map((r) => ({
      id: Number(r.id),
      at: r.at,
      username: r.username,
      action: r.action,
      target: r.target,
      detail: JSON.parse(r.detail) as unknown,
    })),
    total: Number(n),
  };
}
