/**
 * Three-way merge of the user database (passwd, group, shadow, gshadow). The live files win
 * record by record; the new image contributes only what it newly adds: users and groups, and
 * members newly added to a group. Rules and the comparison with OSTree are in
 * docs/etc-merge.md.
 */
import { FerryError } from '@ferry/core';

/** The four user database files, by their name under /etc. */
export type UserDbFile = 'passwd' | 'group' | 'shadow' | 'gshadow';

/** The user database files merged record by record, in the order they are merged. */
export const USER_DB_FILES: readonly UserDbFile[] = ['passwd', 'group', 'shadow', 'gshadow'];

/** Contents of the user database files of one tree; a missing key is a missing file. */
export type UserDb = Partial<Record<UserDbFile, string>>;

/** Size bound per file: an untrusted tree must not make us parse gigabytes. */
export const USER_DB_MAX_BYTES = 1024 * 1024;

const FIELDS: Record<UserDbFile, number> = { passwd: 7, group: 4, shadow: 9, gshadow: 4 };
/** Index of the numeric id (passwd uid, group gid) and of the member list (group, gshadow). */
const ID_FIELD: Partial<Record<UserDbFile, number>> = { passwd: 2, group: 2 };
const MEMBERS_FIELD: Partial<Record<UserDbFile, number>> = { group: 3, gshadow: 3 };

/** A new default entry that could not be merged silently. */
export interface UsersConflict {
  file: UserDbFile;
  name: string;
  kind: 'id-collision';
  detail: string;
}

/** The merged files (present exactly where live had the file) and what happened. */
export interface UsersMergeResult {
  files: UserDb;
  added: { file: UserDbFile; name: string }[];
  conflicts: UsersConflict[];
}

interface Db {
  lines: string[];
  byName: Map<string, string[]>;
}

/** Parses one file, refusing oversized input and records with the wrong field count. */
export function parseUserDb(file: UserDbFile, text: string): Db {
  if (Buffer.byteLength(text) > USER_DB_MAX_BYTES)
    throw new FerryError('ETC_PASSWD_INVALID', `${file} is larger than ${USER_DB_MAX_BYTES} bytes`);
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  const byName = new Map<string, string[]>();
  lines.forEach((line, i) => {
    if (line === '') return;
    const fields = line.split(':');
    const bad = (why: string) =>
      new FerryError('ETC_PASSWD_INVALID', `${file} line ${i + 1}: ${why}`);
    if (fields.length !== FIELDS[file])
      throw bad(`${fields.length} fields, expected ${FIELDS[file]}`);
    const name = fields[0] ?? '';
    if (name === '') throw bad('empty name');
    const id = ID_FIELD[file];
    // NIS compat lines (+name, -name) may leave ids empty.
    const nis = name.startsWith('+') || name.startsWith('-');
    if (id !== undefined && !(nis ? /^\d{0,10}$/ : /^\d{1,10}$/).test(fields[id] ?? ''))
      throw bad('the id is not a number');
    if (file === 'passwd' && !/^\d{0,10}$/.test(fields[3] ?? ''))
      throw bad('the gid is not a number');
    if (!byName.has(name)) byName.set(name, fields);
  });
  return { lines, byName };
}

const members = (fields: string[] | undefined, i: number) =>
  (fields?.[i] ?? '').split(',').filter((m) => m !== '');

interface Ctx {
  file: UserDbFile;
  old: Db;
  live: Db;
  neu: Db;
  /** Names added to passwd (for shadow) or group (for gshadow) in this merge. */
  follow?: Set<string>;
  result: UsersMergeResult;
}

/** Why a new default entry must not be added, or undefined if it may. */
function collision(c: Ctx, name: string, fields: string[]): string | undefined {
  const i = ID_FIELD[c.file];
  if (i === undefined) return undefined;
  const id = fields[i];
  const live = c.live.byName.get(name);
  if (live && live[i] !== id) return `${name} has id ${live[i]} here but ${id} in the new image`;
  if (live) return undefined;
  for (const [other, f] of c.live.byName)
    if (f[i] === id && !other.startsWith('+') && !other.startsWith('-'))
      return `${name} (id ${id}) in the new image: id ${id} belongs to ${other} here`;
  return undefined;
}

function mergeFile(c: Ctx): { text: string; names: Set<string> } {
  const mi = MEMBERS_FIELD[c.file];
  const lines = c.live.lines.map((line) => {
    const fields = line.split(':');
    const name = fields[0] ?? '';
    const n = c.neu.byName.get(name);
    if (mi === undefined || line === '' || !n) return line;
    const have = members(fields, mi);
    const old = new Set(members(c.old.byName.get(name), mi));
    const extra = members(n, mi).filter((m) => !old.has(m) && !have.includes(m));
    if (extra.length === 0) return line;
    fields[mi] = [...have, ...extra].join(',');
    return fields.join(':');
  });
  const names = new Set<string>();
  for (const [name, fields] of c.neu.byName) {
    const fresh = !c.old.byName.has(name) && !c.live.byName.has(name);
    // A default the owner deleted stays deleted; nothing to check.
    if (!fresh && !c.live.byName.has(name)) continue;
    const why = collision(c, name, fields);
    if (why) c.result.conflicts.push({ file: c.file, name, kind: 'id-collision', detail: why });
    if (!fresh || why || (c.follow && !c.follow.has(name))) continue;
    lines.push(fields.join(':'));
    names.add(name);
    c.result.added.push({ file: c.file, name });
  }
  return { text: lines.length ? `${lines.join('\n')}\n` : '', names };
}

/**
 * Merges the user database: live records as they are (local users, changed shells and
 * passwords, edited member lists), plus users and groups that the new defaults add and live
 * lacks, appended in the new defaults' order; members newly added to a group by the new
 * defaults are appended to the live member list. A new user or group whose id is taken by a
 * different live entry is not added and is reported as 'id-collision'. shadow and gshadow
 * follow passwd and group: a line is added exactly when its user or group was. A file is
 * returned only where live has it.
 *
 * @example
 * const r = mergeUsers({ oldDefaults: v1, live: current, newDefaults: v2 });
 * await writeFile('/new/etc/passwd', r.files.passwd ?? '');
 */
export function mergeUsers(inp: {
  oldDefaults: UserDb;
  live: UserDb;
  newDefaults: UserDb;
}): UsersMergeResult {
  const result: UsersMergeResult = { files: {}, added: [], conflicts: [] };
  const added: Partial<Record<UserDbFile, Set<string>>> = {};
  const leader: Record<UserDbFile, UserDbFile | undefined> = {
    passwd: undefined,
    group: undefined,
    shadow: 'passwd',
    gshadow: 'group',
  };
  for (const file of USER_DB_FILES) {
    const parse = (t: string | undefined) => parseUserDb(file, t ?? '');
    const old = parse(inp.oldDefaults[file]);
    const neu = parse(inp.newDefaults[file]);
    const liveText = inp.live[file];
    if (liveText === undefined) continue;
    const lead = leader[file];
    const follow = lead ? (added[lead] ?? new Set<string>()) : undefined;
    const merged = mergeFile({ file, old, live: parse(liveText), neu, follow, result });
    result.files[file] = merged.text;
    added[file] = merged.names;
  }
  return result;
}
