/**
 * Deciding the three-way /etc merge: a pure function over three scanned trees (old defaults,
 * live, new defaults). The rules are in docs/etc-merge.md; applying the plan is etc-merge.ts.
 */
import { sameEntry, type EtcEntry } from './etc-tree.ts';

/** Why a path needs the owner's attention after a merge. */
export type EtcConflictKind =
  | 'both-changed'
  | 'changed-locally-removed-upstream'
  | 'deleted-locally-changed-upstream'
  | 'both-added'
  | 'always-new-overrode-local'
  | 'special-file-skipped'
  | 'id-collision';

/** One conflict; `savedAs` is where the new default was stored, relative to conflictDir. */
export interface EtcConflict {
  path: string;
  kind: EtcConflictKind;
  savedAs?: string;
  detail?: string;
}

/** Where a path of the merged tree comes from; a path absent from `take` is not in it. */
export type EtcSource = 'live' | 'new';

/** The decided merge: a source per path, the conflicts, and counts relative to live. */
export interface EtcMergePlan {
  take: Map<string, EtcSource>;
  conflicts: EtcConflict[];
  kept: number;
  updated: number;
  added: number;
  removed: number;
}

/** Entry maps of the three trees, and the path lists that bypass the rules. */
export interface EtcPlanInput {
  old: ReadonlyMap<string, EtcEntry>;
  live: ReadonlyMap<string, EtcEntry>;
  new: ReadonlyMap<string, EtcEntry>;
  alwaysLive: readonly string[];
  alwaysNew: readonly string[];
  /** Paths decided elsewhere (the user database files), left out of the plan. */
  exclude: ReadonlySet<string>;
}

const under = (path: string, list: readonly string[]) =>
  list.some((p) => path === p || path.startsWith(`${p}/`));

const parentOf = (path: string) => (path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : '');

type Decision = { from: EtcSource | undefined; conflict?: EtcConflictKind };

/** Rules 1-5 and 7 for one path, ignoring its parent (rule 6 is the structural pass). */
function decide(path: string, inp: EtcPlanInput): Decision {
  const o = inp.old.get(path);
  const l = inp.live.get(path);
  const n = inp.new.get(path);
  const src = (e: EtcEntry | undefined, s: EtcSource) => (e ? s : undefined);
  if (under(path, inp.alwaysLive)) return { from: src(l, 'live') };
  if (under(path, inp.alwaysNew)) {
    const lost = l !== undefined && !sameEntry(l, o) && !sameEntry(l, n);
    return { from: src(n, 'new'), ...(lost ? { conflict: 'always-new-overrode-local' } : {}) };
  }
  // Rules 1 and 5: unmodified (including absent in both) follows the new default.
  if (sameEntry(o, l)) return { from: src(n, 'new') };
  // Rule 3: deleted locally stays deleted.
  if (l === undefined)
    return n && !sameEntry(n, o)
      ? { from: undefined, conflict: 'deleted-locally-changed-upstream' }
      : { from: undefined };
  // Rule 4: added locally is kept.
  if (o === undefined)
    return n && !sameEntry(n, l) ? { from: 'live', conflict: 'both-added' } : { from: 'live' };
  // Rule 2: modified locally wins; a conflict only if upstream changed it differently.
  if (sameEntry(n, o) || sameEntry(n, l)) return { from: 'live' };
  return { from: 'live', conflict: n ? 'both-changed' : 'changed-locally-removed-upstream' };
}

/**
 * Plans the merge. After the per-path rules, a structural pass keeps the tree sound: a kept
 * live path forces its ancestors to be directories (taken from live when the new default
 * would drop them or change their type), and a path whose parent is gone or not a directory
 * is dropped.
 *
 * @example
 * const plan = planEtcMerge({ old, live, new: neu, alwaysLive: ['hostname'], alwaysNew: [], exclude: new Set() });
 * plan.take.get('motd'); // 'new' | 'live' | undefined
 */
export function planEtcMerge(inp: EtcPlanInput): EtcMergePlan {
  const paths = [...new Set([...inp.old.keys(), ...inp.live.keys(), ...inp.new.keys()])]
    .filter((p) => !inp.exclude.has(p))
    .sort();
  const take = new Map<string, EtcSource>();
  const conflicts = new Map<string, EtcConflictKind>();
  for (const path of paths) {
    const d = decide(path, inp);
    if (d.from) take.set(path, d.from);
    if (d.conflict) conflicts.set(path, d.conflict);
  }
  const entryOf = (p: string) => {
    const s = take.get(p);
    return s === 'live' ? inp.live.get(p) : s === 'new' ? inp.new.get(p) : undefined;
  };
  // Local changes below a directory keep that directory.
  for (const path of paths) {
    if (take.get(path) !== 'live' || path === '') continue;
    for (let a = parentOf(path); ; a = parentOf(a)) {
      if (entryOf(a)?.type !== 'dir') {
        take.set(a, 'live');
        if (!conflicts.has(a))
          conflicts.set(a, inp.new.has(a) ? 'both-changed' : 'changed-locally-removed-upstream');
      }
      if (a === '') break;
    }
  }
  // Nothing survives under a parent that is gone or not a directory; no special files.
  for (const path of paths) {
    if (!take.has(path)) continue;
    if (path !== '' && entryOf(parentOf(path))?.type !== 'dir') {
      if (take.get(path) === 'new') conflicts.set(path, 'deleted-locally-changed-upstream');
      take.delete(path);
    } else if (entryOf(path)?.type === 'special') {
      conflicts.set(path, 'special-file-skipped');
      take.delete(path);
    }
  }
  return {
    take,
    ...count(paths, take, inp),
    conflicts: [...conflicts].map(([path, kind]) => ({ path, kind })),
  };
}

function count(paths: string[], take: Map<string, EtcSource>, inp: EtcPlanInput) {
  const c = { kept: 0, updated: 0, added: 0, removed: 0 };
  for (const path of paths) {
    const l = inp.live.get(path);
    const from = take.get(path);
    if (from === 'live' || (from === 'new' && l && sameEntry(l, inp.new.get(path)))) c.kept++;
    else if (from === 'new') c[l ? 'updated' : 'added']++;
    else if (l) c.removed++;
  }
  return c;
}
