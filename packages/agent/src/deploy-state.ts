/**
 * deployments.json: the deployment store's record of which deployments exist, which one boots
 * next (default), which one is running (booted) and the default before it (previous). Replaced
 * atomically as a whole; it is the commit point of every store operation.
 */
import { readFile } from 'node:fs/promises';
import { FerryError, canonicalize, parseJsonBounded, writeFileAtomic } from '@ferry/core';

/** The release a deployment was checked out for. */
export interface DeploymentRelease {
  version: string;
  counter: number;
}

/** One deployment: a checked-out tree under deployments/<id>/. */
export interface DeploymentRecord {
  /** "<n>-<first 12 hex of the tree digest>"; n increases with every checkout. */
  id: string;
  /** Hex SHA-256 of the tree listing (trees/<tree>.tree). */
  tree: string;
  release: DeploymentRelease;
  /** ISO 8601 time of the checkout. */
  created: string;
  /** Pinned deployments are never pruned. */
  pinned: boolean;
}

/** The whole of deployments.json. */
export interface DeployState {
  version: 1;
  /** The n of the next deployment id. */
  next: number;
  default: string | null;
  booted: string | null;
  previous: string | null;
  /** Oldest first. */
  deployments: DeploymentRecord[];
}

/** A deployment id as the store makes them; anything else is refused before it names a path. */
export const DEPLOYMENT_ID = /^[0-9]{1,15}-[0-9a-f]{12}$/;
const MAX_STATE_BYTES = 4 << 20;

/** The state of a new, empty store. */
export const emptyState = (): DeployState => ({
  version: 1,
  next: 1,
  default: null,
  booted: null,
  previous: null,
  deployments: [],
});

const bad = (why: string): FerryError =>
  new FerryError('DEPLOY_STATE_INVALID', `deployments.json: ${why}`);

function exactKeys(o: unknown, keys: string[], what: string): Record<string, unknown> {
  if (typeof o !== 'object' || o === null || Array.isArray(o))
    throw bad(`${what} is not an object`);
  const got = Object.keys(o).sort();
  if (got.join() !== [...keys].sort().join()) throw bad(`${what} has keys ${got.join(', ')}`);
  return o as Record<string, unknown>;
}

function checkRecord(v: unknown): DeploymentRecord {
  const r = exactKeys(v, ['id', 'tree', 'release', 'created', 'pinned'], 'a deployment');
  const rel = exactKeys(r.release, ['version', 'counter'], 'a release');
  if (typeof r.id !== 'string' || !DEPLOYMENT_ID.test(r.id)) throw bad('bad deployment id');
  if (typeof r.tree !== 'string' || !/^[0-9a-f]{64}$/.test(r.tree)) throw bad('bad tree digest');
  if (!r.id.endsWith(r.tree.slice(0, 12))) throw bad(`${r.id} does not match its tree`);
  if (typeof rel.version !== 'string' || rel.version.length > 256) throw bad('bad release version');
  if (!Number.isSafeInteger(rel.counter) || (rel.counter as number) < 0) throw bad('bad counter');
  if (typeof r.created !== 'string' || Number.isNaN(Date.parse(r.created))) throw bad('bad time');
  if (typeof r.pinned !== 'boolean') throw bad('bad pinned flag');
  return r as unknown as DeploymentRecord;
}

/** Validates parsed deployments.json; DEPLOY_STATE_INVALID on any deviation. */
export function checkState(v: unknown): DeployState {
  const keys = ['version', 'next', 'default', 'booted', 'previous', 'deployments'];
  const s = exactKeys(v, keys, 'the state');
  if (s.version !== 1) throw bad(`unknown version ${String(s.version)}`);
  if (!Number.isSafeInteger(s.next) || (s.next as number) < 1) throw bad('bad next');
  if (!Array.isArray(s.deployments)) throw bad('deployments is not a list');
  const recs = s.deployments.map(checkRecord);
  const ids = new Set(recs.map((r) => r.id));
  if (ids.size !== recs.length) throw bad('duplicate deployment id');
  for (const k of ['default', 'booted', 'previous'] as const)
    if (s[k] !== null && !ids.has(s[k] as string)) throw bad(`${k} names no deployment`);
  return s as unknown as DeployState;
}

/** Reads deployments.json, or the empty state if there is none. */
export async function loadState(path: string): Promise<DeployState> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return emptyState();
    throw e;
  }
  try {
    return checkState(parseJsonBounded(bytes, { maxBytes: MAX_STATE_BYTES, maxDepth: 4 }));
  } catch (e) {
    if (e instanceof FerryError && e.code === 'DEPLOY_STATE_INVALID') throw e;
    throw bad((e as Error).message);
  }
}

/** Writes deployments.json atomically (the commit point of every store operation). */
export async function saveState(path: string, state: DeployState): Promise<void> {
  await writeFileAtomic(path, canonicalize(checkState(state)) + '\n');
}
