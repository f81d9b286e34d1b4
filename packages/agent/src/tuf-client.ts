/**
 * The device's TUF client: tuf-js's Updater (the TUF reference client for JavaScript) behind a
 * small interface whose every refusal is a FerryError with a stable TUF_* code. Ferry does no
 * TUF verification of its own here: signatures, thresholds, versions, expiry, lengths and hashes
 * are all checked by tuf-js (spec §5); this file chooses the limits and maps the errors.
 *
 * Create one client per update cycle: tuf-js takes the update start time once, when the client
 * is created, and checks every expiry against it (spec 5.1).
 */
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Updater } from 'tuf-js';
import type { TargetFile } from 'tuf-js';
import { FerryError, type ErrorCode } from '@ferry/core';

/** Byte and walk limits; the defaults are python-tuf's and tuf-js's (endless data, spec 5.3.3). */
export interface TufLimits {
  rootMaxBytes: number;
  timestampMaxBytes: number;
  snapshotMaxBytes: number;
  targetsMaxBytes: number;
  maxRootRotations: number;
  maxDelegations: number;
}

/** The defaults of {@link TufLimits}. */
export const DEFAULT_TUF_LIMITS: Readonly<TufLimits> = {
  rootMaxBytes: 512_000,
  timestampMaxBytes: 16_384,
  snapshotMaxBytes: 2_000_000,
  targetsMaxBytes: 5_000_000,
  maxRootRotations: 256,
  maxDelegations: 32,
};

/** Options of {@link createTufClient}. */
export interface TufClientOptions {
  /** Base URL of the repository's metadata (`N.root.json`, `timestamp.json`, ...). */
  metadataUrl: string;
  /** Directory of trusted metadata; must hold `root.json` (see {@link initTrustedRoot}). */
  metadataDir: string;
  /** Base URL of the repository's targets. */
  targetBaseUrl?: string;
  /** Default directory for {@link TufClient.download}. */
  targetDir?: string;
  /** Bound on each request, headers and body (slow retrieval). Default 60 s. */
  fetchTimeoutMs?: number;
  /** Retries of a request that fails before its body starts. Default 0: the next cycle retries. */
  fetchRetries?: number;
  limits?: Partial<TufLimits>;
}

/** A target as trusted targets metadata lists it. */
export interface TufTarget {
  name: string;
  length: number;
  hashes: Record<string, string>;
  /** The target's `custom` object from signed metadata (may be empty). */
  custom: Record<string, unknown>;
}

/** What {@link TufClient.download} did. */
export interface TufDownload {
  path: string;
  /** True when a verified copy was already there and nothing was fetched. */
  cached: boolean;
}

/** A TUF client bound to one repository and one trusted metadata directory. */
export interface TufClient {
  /** Updates root (walking the chain), timestamp, snapshot and top-level targets (spec 5.3-5.6). */
  refresh(): Promise<void>;
  /** The trusted entry of `name`, searching delegations; TUF_TARGET_NOT_FOUND if none lists it. */
  getTargetInfo(name: string): Promise<TufTarget>;
  /** Downloads and verifies `name` into `dir` (default targetDir) unless a verified copy is there. */
  download(name: string, dir?: string): Promise<TufDownload>;
}

// tuf-js's error classes (tuf-js and @tufjs/models), by class name: names survive a duplicated
// module copy, instanceof would not. The first name on the prototype chain that is listed wins.
const CODE_BY_CLASS: Record<string, ErrorCode> = {
  ExpiredMetadataError: 'TUF_EXPIRED',
  EqualVersionError: 'TUF_ROLLBACK',
  BadVersionError: 'TUF_ROLLBACK',
  UnsignedMetadataError: 'TUF_UNSIGNED',
  LengthOrHashMismatchError: 'TUF_HASH_MISMATCH',
  DownloadLengthMismatchError: 'TUF_TOO_LARGE',
  DownloadHTTPError: 'TUF_DOWNLOAD_FAILED',
  DownloadError: 'TUF_DOWNLOAD_FAILED',
  PersistError: 'IO',
  UnsupportedAlgorithmError: 'TUF_METADATA_INVALID',
  CryptoError: 'TUF_METADATA_INVALID',
  RepositoryError: 'TUF_METADATA_INVALID',
  ValueError: 'TUF_METADATA_INVALID',
  SyntaxError: 'TUF_METADATA_INVALID',
};

/**
 * The one place tuf-js's errors become Ferry codes. `undefined` for tuf-js's wrapper errors
 * (RuntimeError, ReferenceError), whose original is recovered by the client (see `watch`).
 */
export function tufErrorCode(e: unknown): ErrorCode | undefined {
  if (e instanceof FerryError) return e.code;
  if (!(e instanceof Error)) return 'INTERNAL';
  if (e.name === 'TimeoutError') return 'TUF_TIMEOUT'; // AbortSignal.timeout: slow retrieval
  // undici's network failure: TypeError('fetch failed') with the socket error as cause.
  if (e.name === 'TypeError' && e.cause !== undefined)
    return (e.cause as Error).name === 'TimeoutError' ? 'TUF_TIMEOUT' : 'TUF_DOWNLOAD_FAILED';
  const errno = e as NodeJS.ErrnoException;
  if (typeof errno.code === 'string' && typeof errno.syscall === 'string') return 'IO';
  for (let p = Object.getPrototypeOf(e) as object | null; p && p !== Error.prototype;) {
    const code = CODE_BY_CLASS[(p.constructor as { name: string }).name];
    if (code) return code;
    p = Object.getPrototypeOf(p) as object | null;
  }
  if (
    e.name === 'RuntimeError' ||
    e.name === 'ReferenceError' ||
    e.constructor.name === 'RuntimeError'
  )
    return e.cause === undefined ? undefined : tufErrorCode(e.cause);
  return 'INTERNAL';
}

/** `e` as a FerryError with a TUF code (or `fallback` when the cause is unknown). */
function toFerryError(context: string, e: unknown, original?: unknown): FerryError {
  if (e instanceof FerryError) return e.withContext(context);
  const code = tufErrorCode(e) ?? (original === undefined ? undefined : tufErrorCode(original));
  const message = e instanceof Error ? e.message : String(e);
  return new FerryError(code ?? 'TUF_METADATA_INVALID', `${context}: ${message}`, {
    cause: original ?? e,
  });
}

/**
 * Records the last error thrown by tuf-js's trusted-metadata store and fetcher. tuf-js 6 rethrows
 * snapshot and targets failures as a bare RuntimeError carrying only the message; the recorded
 * original keeps the class, so a rollback stays TUF_ROLLBACK instead of becoming "invalid".
 * Observation only: the wrapped methods' results and errors pass through unchanged.
 */
function watch(updater: Updater): { last: unknown; reset(): void } {
  const seen = { last: undefined as unknown, reset: () => (seen.last = undefined) };
  const inner = updater as unknown as Record<string, Record<string, unknown> | undefined>;
  const spy = (obj: Record<string, unknown> | undefined, names: string[]) => {
    for (const name of names) {
      const fn = obj?.[name];
      if (!obj || typeof fn !== 'function') continue;
      obj[name] = function (this: unknown, ...args: unknown[]) {
        try {
          const r: unknown = fn.apply(this, args);
          if (r instanceof Promise)
            return r.catch((e: unknown) => {
              seen.last = e;
              throw e;
            });
          return r;
        } catch (e) {
          seen.last = e;
          throw e;
        }
      };
    }
  };
  spy(inner.trustedSet, [
    'updateRoot',
    'updateTimestamp',
    'updateSnapshot',
    'updateDelegatedTargets',
  ]);
  spy(inner.fetcher, ['downloadFile', 'downloadBytes']);
  return seen;
}

/**
 * Stores `rootJson` as the trusted root of `metadataDir` (atomically; no network). Only size and
 * JSON form are checked here: tuf-js verifies the root's self-signature when a client loads it.
 */
export async function initTrustedRoot(metadataDir: string, rootJson: Buffer): Promise<void> {
  if (rootJson.length > DEFAULT_TUF_LIMITS.rootMaxBytes)
    throw new FerryError(
      'TUF_METADATA_INVALID',
      `trusted root is over ${DEFAULT_TUF_LIMITS.rootMaxBytes} bytes`,
    );
  try {
    JSON.parse(rootJson.toString('utf8'));
  } catch (e) {
    throw new FerryError('TUF_METADATA_INVALID', 'trusted root is not JSON', { cause: e });
  }
  await mkdir(metadataDir, { recursive: true });
  const tmp = join(metadataDir, `.root.json.${process.pid}.tmp`);
  await writeFile(tmp, rootJson, { flush: true });
  await rename(tmp, join(metadataDir, 'root.json'));
}

/** Reads a trusted root file (size-bounded) and stores it with {@link initTrustedRoot}. */
export async function initTrustedRootFromFile(metadataDir: string, file: string): Promise<void> {
  const st = await stat(file);
  if (st.size > DEFAULT_TUF_LIMITS.rootMaxBytes)
    throw new FerryError(
      'TUF_METADATA_INVALID',
      `${file} is over ${DEFAULT_TUF_LIMITS.rootMaxBytes} bytes`,
    );
  await initTrustedRoot(metadataDir, await readFile(file));
}

function newUpdater(o: TufClientOptions): Updater {
  const l = { ...DEFAULT_TUF_LIMITS, ...o.limits };
  try {
    return new Updater({
      metadataDir: o.metadataDir,
      metadataBaseUrl: o.metadataUrl,
      ...(o.targetBaseUrl === undefined ? {} : { targetBaseUrl: o.targetBaseUrl }),
      config: {
        rootMaxLength: l.rootMaxBytes,
        timestampMaxLength: l.timestampMaxBytes,
        snapshotMaxLength: l.snapshotMaxBytes,
        targetsMaxLength: l.targetsMaxBytes,
        maxRootRotations: l.maxRootRotations,
        maxDelegations: l.maxDelegations,
        fetchTimeout: o.fetchTimeoutMs ?? 60_000,
        fetchRetries: o.fetchRetries ?? 0,
        userAgent: 'ferry-agent',
      },
    });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'TUF_ROOT_MISSING' : undefined;
    if (code) throw new FerryError(code, `no trusted root.json in ${o.metadataDir}`, { cause: e });
    throw toFerryError(`loading trusted root from ${o.metadataDir}`, e);
  }
}

// tuf-js names a target file encodeURIComponent(path), which leaves "." and ".." as they are.
function targetFile(dir: string, name: string): string {
  if (name === '' || name === '.' || name === '..')
    throw new FerryError('USAGE', `invalid target name ${JSON.stringify(name)}`);
  return join(dir, encodeURIComponent(name));
}

/**
 * A TUF client over tuf-js's Updater; throws TUF_ROOT_MISSING when `metadataDir` has no root.
 *
 * @example
 * const tuf = createTufClient({ metadataUrl, metadataDir: '/var/lib/ferry/tuf', targetBaseUrl });
 * await tuf.refresh();
 * const { path } = await tuf.download('channels/stable/index.json', '/var/lib/ferry/targets');
 */
export function createTufClient(o: TufClientOptions): TufClient {
  const updater = newUpdater(o);
  const seen = watch(updater);
  let refreshed = false;
  const run = async <T>(context: string, step: () => Promise<T>): Promise<T> => {
    seen.reset();
    try {
      return await step();
    } catch (e) {
      throw toFerryError(context, e, seen.last);
    }
  };
  const refresh = () =>
    run('refreshing TUF metadata', async () => {
      await updater.refresh();
      refreshed = true;
    });
  const info = async (name: string): Promise<TargetFile> => {
    if (!refreshed) await refresh();
    const t = await run(`looking up target ${name}`, () => updater.getTargetInfo(name));
    if (!t)
      throw new FerryError('TUF_TARGET_NOT_FOUND', `no trusted targets metadata lists ${name}`);
    return t;
  };
  return {
    refresh,
    async getTargetInfo(name) {
      const t = await info(name);
      return { name: t.path, length: t.length, hashes: { ...t.hashes }, custom: { ...t.custom } };
    },
    async download(name, dir = o.targetDir) {
      if (dir === undefined) throw new FerryError('USAGE', 'no target directory given');
      if (o.targetBaseUrl === undefined) throw new FerryError('USAGE', 'no target base URL given');
      const path = targetFile(dir, name);
      const t = await info(name);
      if (await updater.findCachedTarget(t, path)) return { path, cached: true };
      await mkdir(dir, { recursive: true });
      await run(`downloading target ${name}`, () => updater.downloadTarget(t, path));
      return { path, cached: false };
    },
  };
}
