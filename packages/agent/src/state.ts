/**
 * The agent's persistent state: `<dataDir>/state.json` (what each slot holds, the release-counter
 * high-water mark, the last install and rollback) plus `<dataDir>/high-water`, a second copy of
 * the mark. Format: docs/formats/state.md.
 *
 * Invariant: the high-water mark never goes down. Both files are replaced atomically, the
 * high-water file first, and load() takes the larger of the two, so neither a power cut nor an
 * older state.json put back (by hand or by a restore) can lower it: lowering it would let a
 * device accept a rolled-back release it had already moved past.
 */
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { FerryError, isFerryError, readBoundedFile, writeFileAtomic } from '@ferry/core';
import { SLOT_NAME_RE } from './config-schema.ts';

/** What one slot holds, as far as the agent knows. */
export interface SlotRecord {
  release?: { compatible: string; version: string; releaseCounter: number; manifestSha256: string };
  image?: {
    class: string;
    sha256: string;
    size: number;
    chunkIndexSha256: string;
    type: string;
    /** Where the dm-verity hash tree starts inside the slot. */
    hashOffset?: number;
  };
  status: 'empty' | 'writing' | 'installed' | 'unknown';
  installedAt?: string;
  bootedAt?: string;
  markedGoodAt?: string;
  markedBadAt?: string;
}

/** state.json, version 1. Unknown keys in a file are kept, so an older agent never drops them. */
export interface AgentState {
  version: 1;
  /** Highest release counter this device has committed; never lowered. */
  highWaterCounter: number;
  installCount: number;
  /** By slot name ("rootfs.0"). */
  slots: Record<string, SlotRecord>;
  /** The bootable slot made primary by the last install, until it is marked good or bad. */
  pendingSlot?: string;
  /** A slot written and verified but not yet made primary (download-only / ask policies). */
  stagedSlot?: string;
  /** The channel chosen by `ferry rebase`, overriding [update] channel. */
  channel?: string;
  lastInstall?: {
    at: string;
    result: 'ok' | 'failed';
    release?: string;
    target?: string;
    error?: { code: string; message: string };
  };
  lastRollback?: { at: string; from: string; to: string; reason: string };
}

/** state.json is a few KiB; anything near this is not ours. */
export const MAX_STATE_BYTES = 1024 * 1024;

/** The state of a device nothing has been installed on. */
export function freshState(): AgentState {
  return { version: 1, highWaterCounter: 0, installCount: 0, slots: {} };
}

/**
 * Where the install code keeps the chunk index of an installed image.
 * @example
 * indexPath('/var/lib/ferry', img.chunkIndex.sha256) // '/var/lib/ferry/indexes/<sha256>.cidx'
 */
export function indexPath(dataDir: string, sha256: string): string {
  // The digest becomes a file name: refuse anything that could climb out of indexes/.
  if (!/^[0-9a-f]{64}$/.test(sha256))
    throw new FerryError('USAGE', `not a SHA-256 in lowercase hex: '${sha256.slice(0, 80)}'`);
  return join(dataDir, 'indexes', `${sha256}.cidx`);
}

type Check = (v: unknown, at: string) => void;

const bad = (at: string, what: string) => new FerryError('STATE_INVALID', `${at} must be ${what}`);
const is =
  (what: string, ok: (v: unknown) => boolean): Check =>
  (v, at) => {
    if (!ok(v)) throw bad(at, what);
  };
const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const str = is('a string', (v) => typeof v === 'string');
const uint = is('a non-negative integer', (v) => Number.isSafeInteger(v) && (v as number) >= 0);
const hex64 = is(
  'a SHA-256 in lowercase hex',
  (v) => typeof v === 'string' && /^[0-9a-f]{64}$/.test(v),
);
const oneOf = (...xs: unknown[]) => is(`one of ${xs.join(', ')}`, (v) => xs.includes(v));

/** An object with these keys ('name?' for optional ones); other keys are kept unchecked. */
function shape(spec: Record<string, Check>): Check {
  return (v, at) => {
    if (!isObject(v)) throw bad(at, 'an object');
    for (const [key, check] of Object.entries(spec)) {
      const name = key.replace(/\?$/, '');
      if (!Object.hasOwn(v, name)) {
        if (name === key) throw bad(`${at}.${name}`, 'present');
        continue;
      }
      check(v[name], `${at}.${name}`);
    }
  };
}

const SLOT_RECORD = shape({
  status: oneOf('empty', 'writing', 'installed', 'unknown'),
  'release?': shape({ compatible: str, version: str, releaseCounter: uint, manifestSha256: hex64 }),
  'image?': shape({
    class: str,
    sha256: hex64,
    size: uint,
    chunkIndexSha256: hex64,
    type: str,
    'hashOffset?': uint,
  }),
  'installedAt?': str,
  'bootedAt?': str,
  'markedGoodAt?': str,
  'markedBadAt?': str,
});

const slotMap: Check = (v, at) => {
  if (!isObject(v)) throw bad(at, 'an object');
  for (const [name, rec] of Object.entries(v)) {
    if (!SLOT_NAME_RE.test(name)) throw bad(`${at} key '${name.slice(0, 80)}'`, 'a slot name');
    SLOT_RECORD(rec, `${at}.${name}`);
  }
};

const STATE = shape({
  version: oneOf(1),
  highWaterCounter: uint,
  installCount: uint,
  slots: slotMap,
  'pendingSlot?': is('a slot name', (v) => typeof v === 'string' && SLOT_NAME_RE.test(v)),
  'stagedSlot?': is('a slot name', (v) => typeof v === 'string' && SLOT_NAME_RE.test(v)),
  'channel?': is(
    'a channel name',
    (v) => typeof v === 'string' && /^[a-z][a-z0-9-]{0,31}$/.test(v),
  ),
  'lastInstall?': shape({
    at: str,
    result: oneOf('ok', 'failed'),
    'release?': str,
    'target?': str,
    'error?': shape({ code: str, message: str }),
  }),
  'lastRollback?': shape({ at: str, from: str, to: str, reason: str }),
});

/** Checks a parsed state.json; STATE_INVALID naming the field at fault. */
export function checkState(v: unknown): AgentState {
  STATE(v, 'state');
  return v as AgentState;
}

// One queue per data directory, shared by every StateStore in the process.
const queues = new Map<string, Promise<unknown>>();

async function readOrUndefined(path: string, max: number): Promise<Buffer | undefined> {
  try {
    return (await readBoundedFile(path, max, 'STATE_INVALID')).bytes;
  } catch (e) {
    const cause = (e as { cause?: NodeJS.ErrnoException }).cause;
    if (isFerryError(e, 'IO') && cause?.code === 'ENOENT') return undefined;
    throw e;
  }
}

/**
 * Loads and saves the agent state. Updates are serialised within the process (one queue per
 * data directory); the agent's own lock keeps other processes out.
 *
 * @example
 * const store = new StateStore(config.dataDir);
 * await store.update((s) => { s.slots['rootfs.1'] = { status: 'writing' }; });
 * await store.raiseHighWater(manifest.releaseCounter);
 */
export class StateStore {
  readonly dataDir: string;
  readonly path: string;
  readonly highWaterPath: string;

  constructor(dataDir: string) {
    this.dataDir = resolve(dataDir);
    this.path = join(this.dataDir, 'state.json');
    this.highWaterPath = join(this.dataDir, 'high-water');
  }

  /** The high-water file's value; 0 when it does not exist. */
  async #readHighWater(): Promise<number> {
    const bytes = await readOrUndefined(this.highWaterPath, 64);
    if (bytes === undefined) return 0;
    const m = /^([0-9]{1,15})\n?$/.exec(bytes.toString('latin1'));
    if (!m) throw new FerryError('STATE_INVALID', `${this.highWaterPath}: not a decimal counter`);
    return Number(m[1]);
  }

  async #read(): Promise<{ state: AgentState; fileHighWater: number }> {
    const fileHighWater = await this.#readHighWater();
    const bytes = await readOrUndefined(this.path, MAX_STATE_BYTES);
    if (bytes === undefined)
      return { state: { ...freshState(), highWaterCounter: fileHighWater }, fileHighWater };
    let state: AgentState;
    try {
      state = checkState(JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes)));
    } catch (e) {
      // Refused, not reset: a fresh state would forget what the slots hold.
      const msg = isFerryError(e) ? e.message : `not valid JSON: ${(e as Error).message}`;
      throw new FerryError('STATE_INVALID', `${this.path}: ${msg}`, { cause: e });
    }
    state.highWaterCounter = Math.max(state.highWaterCounter, fileHighWater);
    return { state, fileHighWater };
  }

  /** The current state: fresh if there is no file yet; STATE_INVALID if it is corrupt. */
  async load(): Promise<AgentState> {
    return (await this.#read()).state;
  }

  async #apply(fn: (s: AgentState) => void | Promise<void>): Promise<AgentState> {
    const { state, fileHighWater } = await this.#read();
    const before = state.highWaterCounter;
    await fn(state);
    try {
      checkState(state);
    } catch (e) {
      throw new FerryError(
        'INTERNAL',
        `state update produced an invalid state: ${(e as Error).message}`,
        { cause: e },
      );
    }
    state.highWaterCounter = Math.max(state.highWaterCounter, before);
    await mkdir(this.dataDir, { recursive: true });
    // The copy that is never read alone goes first: after a cut here both files still agree or
    // the high-water file is ahead, never behind.
    if (state.highWaterCounter > fileHighWater)
      await writeFileAtomic(this.highWaterPath, `${state.highWaterCounter}\n`);
    await writeFileAtomic(this.path, `${JSON.stringify(state, null, 2)}\n`);
    return state;
  }

  /**
   * Loads, lets `fn` change the state, and writes it atomically; one update at a time. The
   * high-water mark is kept at least where it was, whatever `fn` does to it. Returns the state
   * written.
   */
  async update(fn: (s: AgentState) => void | Promise<void>): Promise<AgentState> {
    const prev = queues.get(this.dataDir) ?? Promise.resolve();
    const run = prev.catch(() => undefined).then(() => this.#apply(fn));
    queues.set(this.dataDir, run);
    try {
      return await run;
    } finally {
      if (queues.get(this.dataDir) === run) queues.delete(this.dataDir);
    }
  }

  /** Raises the high-water mark to `counter` if that is higher; never lowers it. */
  async raiseHighWater(counter: number): Promise<void> {
    if (!Number.isSafeInteger(counter) || counter < 0)
      throw new FerryError(
        'USAGE',
        `release counter must be a non-negative integer, not ${counter}`,
      );
    await this.update((s) => {
      s.highWaterCounter = Math.max(s.highWaterCounter, counter);
    });
  }
}
