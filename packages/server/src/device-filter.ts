/**
 * Device filters (docs/server.md "Filters"): a schema-checked object of fields, never SQL text.
 * `whereFilter` turns one into bound parameters of a Kysely query; `matchesFilter` decides the
 * same in memory for the check-in path. Both read tags and attributes from their JSON text the
 * same way, and LIKE patterns escape their wildcards, so input such as `' OR 1=1 --` or `%`
 * matches only itself (SQL injection, wildcard smuggling).
 */
import { sql, type ExpressionBuilder, type Expression, type SqlBool } from 'kysely';
import type { DeviceFilter } from '@ferry/protocol';
import type { DeviceTable, FleetDb } from './db-schema.ts';

/** `%needle%` with LIKE wildcards and the escape character escaped. */
function containsPattern(needle: string): string {
  return `%${needle.replace(/[\\%_]/g, (m) => '\\' + m)}%`;
}

function like(column: string, needle: string): Expression<SqlBool> {
  return sql<SqlBool>`${sql.ref(column)} like ${containsPattern(needle)} escape '\\'`;
}

/** The JSON text one tag or attribute has inside the stored column. */
const tagText = (tag: string): string => JSON.stringify(tag);
const attrText = (k: string, v: string): string => `${JSON.stringify(k)}:${JSON.stringify(v)}`;

/** A WHERE expression selecting the devices `f` selects (all devices for `{}`). */
export function whereFilter(
  eb: ExpressionBuilder<FleetDb, 'devices'>,
  f: DeviceFilter,
): Expression<SqlBool> {
  const parts: Expression<SqlBool>[] = [];
  if (f.compatible !== undefined) parts.push(eb('devices.compatible', '=', f.compatible));
  if (f.channel !== undefined) parts.push(eb('devices.channel', '=', f.channel));
  if (f.status !== undefined) parts.push(eb('devices.status', '=', f.status));
  if (f.release !== undefined) parts.push(eb('devices.release', '=', f.release));
  for (const t of f.tags ?? []) parts.push(like('devices.tags', tagText(t)));
  for (const [k, v] of Object.entries(f.attributes ?? {}))
    parts.push(like('devices.attributes', attrText(k, v)));
  if (f.search !== undefined)
    parts.push(eb.or([like('devices.id', f.search), like('devices.hardware_id', f.search)]));
  return parts.length ? eb.and(parts) : sql<SqlBool>`1 = 1`;
}

/** True if the stored device row is selected by `f` (the same rules as whereFilter). */
export function matchesFilter(d: DeviceTable, f: DeviceFilter): boolean {
  if (f.compatible !== undefined && d.compatible !== f.compatible) return false;
  if (f.channel !== undefined && d.channel !== f.channel) return false;
  if (f.status !== undefined && d.status !== f.status) return false;
  if (f.release !== undefined && d.release !== f.release) return false;
  if ((f.tags ?? []).some((t) => !d.tags.includes(tagText(t)))) return false;
  for (const [k, v] of Object.entries(f.attributes ?? {}))
    if (!d.attributes.includes(attrText(k, v))) return false;
  if (
    f.search !== undefined &&
    !d.id.includes(f.search) &&
    !(d.hardware_id ?? '').includes(f.search)
  )
    return false;
  return true;
}
