/**
 * The agent's side of the device protocol (docs/server.md "Device API"): the device's own
 * ed25519 key, created on first use and never leaving the device, and signed enrol, check-in
 * and report requests. After enrolment, requests go under a device session (one signed
 * request opens it; protocol/device-session.ts), kept beside the key (`<key>.session`, 0600)
 * so the next cycle reuses it. Every answer is size-capped and shape-checked before use; the
 * assignment inside a check-in answer is checked separately (fleet.ts, verifyAssignment).
 */
import { createHash, createPublicKey, sign } from 'node:crypto';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import {
  ERROR_CODES,
  FerryError,
  generateKeyPair,
  loadPrivateKey,
  parseJsonBounded,
  pathExists,
  writeFileAtomic,
  type ErrorCode,
  type PrivateKey,
} from '@ferry/core';
import { DEVICE_HEADERS, type Inventory, type ReportRequest } from '@ferry/protocol';
import { DeviceSession, deviceRequestHeaders, ephemeralKey } from '@ferry/protocol/device-session';
import type { ServerConfig } from './config.ts';

/** Largest answer read from the server: a check-in answer is about 1 KiB. */
const MAX_ANSWER_BYTES = 256 * 1024;

/** What a check-in answers, checked. `assignment` is still untrusted. */
export interface CheckinAnswer {
  pollSeconds: number;
  assignment: unknown;
  repositoryUrl: string | null;
  /** The nonce the request carried: an assignment must echo it. */
  nonce: string;
}

const unreachable = (msg: string, cause?: unknown) =>
  new FerryError('FLEET_UNREACHABLE', msg, { cause });

/** The device's key: loaded, or created (0600, atomically) when the file does not exist. */
async function deviceKey(path: string): Promise<PrivateKey> {
  if (!(await pathExists(path))) {
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    await writeFileAtomic(path, generateKeyPair().privateKeyPem, 0o600);
  }
  return loadPrivateKey(path);
}

/** A server error body's code when it is one of Ferry's, else FLEET_UNREACHABLE. */
function serverError(status: number, body: unknown, what: string): FerryError {
  const b = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
  const code = typeof b.code === 'string' && b.code in ERROR_CODES ? (b.code as ErrorCode) : null;
  const message = typeof b.message === 'string' ? b.message.slice(0, 300) : `HTTP ${status}`;
  return code
    ? new FerryError(code, `${what}: ${message}`)
    : unreachable(`${what}: HTTP ${status} ${message}`);
}

/** The server has no device sessions (an older version): requests stay signed. */
class SessionUnsupported extends Error {}

/**
 * A device's connection to its fleet server.
 * @example
 * const fleet = await FleetClient.open(config.server);
 * const { assignment, nonce } = await fleet.checkin(inventory);
 */
export class FleetClient {
  readonly url: string;
  readonly deviceId: string;
  readonly publicKeyHex: string;
  readonly #key: PrivateKey;
  readonly #timeoutMs: number;
  /** Where the session is kept; undefined: every request is signed. */
  readonly #sessionFile: string | undefined;
  #session: DeviceSession | undefined;

  private constructor(
    url: string,
    key: PrivateKey,
    timeoutMs: number,
    sessionFile: string | undefined,
  ) {
    this.url = url;
    this.#key = key;
    this.#timeoutMs = timeoutMs;
    this.#sessionFile = sessionFile;
    const jwk = createPublicKey(key.key).export({ format: 'jwk' });
    this.publicKeyHex = Buffer.from(jwk.x ?? '', 'base64url').toString('hex');
    this.deviceId = createHash('sha256')
      .update(Buffer.from(this.publicKeyHex, 'hex'))
      .digest('hex')
      .slice(0, 32);
  }

  /**
   * Loads (or creates) the device key named by [server] key, and the session kept beside it.
   * `sessions: false`: every request is signed with the key.
   */
  static async open(
    server: ServerConfig,
    timeoutMs = 30_000,
    opts: { sessions?: boolean } = {},
  ): Promise<FleetClient> {
    const file = (opts.sessions ?? true) ? `${server.key}.session` : undefined;
    const c = new FleetClient(server.url, await deviceKey(server.key), timeoutMs, file);
    if (file) {
      const text = await readFile(file, 'utf8').catch(() => undefined);
      let stored: unknown;
      try {
        stored = text === undefined ? undefined : JSON.parse(text);
      } catch {
        stored = undefined; // a damaged file: a new session replaces it
      }
      const s = DeviceSession.restore(stored);
      const o = (stored ?? {}) as { url?: unknown };
      if (s && s.deviceId === c.deviceId && o.url === server.url) c.#session = s;
    }
    return c;
  }

  /** The session in use, if any (its id and expiry; the key stays inside). */
  get session(): DeviceSession | undefined {
    return this.#session;
  }

  /** Opens a new session with a signed request, and keeps it beside the key. */
  async openSession(): Promise<DeviceSession> {
    const eph = ephemeralKey();
    const { body } = await this.#post('/api/v1/device/session', { publicKey: eph.publicKeyHex });
    let s: DeviceSession;
    try {
      s = DeviceSession.accept(body, eph.privateKey, this.deviceId);
    } catch (e) {
      throw unreachable('session answer does not match the device protocol', e);
    }
    this.#session = s;
    if (this.#sessionFile)
      await writeFileAtomic(
        this.#sessionFile,
        JSON.stringify({ url: this.url, ...s.export() }) + '\n',
        0o600,
      );
    return s;
  }

  /** Forgets the session (the server refused it): the next request opens a new one. */
  async #dropSession(): Promise<void> {
    this.#session = undefined;
    if (this.#sessionFile) await rm(this.#sessionFile, { force: true });
  }

  /**
   * A request under the session (opened first when missing or about to expire); once more
   * under a new session if the server refuses this one (expired, or its key was rotated).
   * A server without sessions (404) gets a signed request instead (a client opened later
   * asks for a session again).
   */
  async #call(path: string, value: unknown): Promise<{ body: unknown; nonce: string }> {
    if (!this.#sessionFile) return this.#post(path, value);
    let fresh = false;
    if (!this.#session?.usable(Date.now())) {
      try {
        await this.openSession();
        fresh = true;
      } catch (e) {
        if (!(e instanceof SessionUnsupported)) throw e;
        return this.#post(path, value);
      }
    }
    try {
      return await this.#post(path, value, this.#session);
    } catch (e) {
      const code = e instanceof FerryError ? e.code : undefined;
      if (fresh || (code !== 'DEVICE_SESSION_EXPIRED' && code !== 'DEVICE_AUTH_FAILED')) throw e;
      await this.#dropSession();
      await this.openSession();
      return this.#post(path, value, this.#session);
    }
  }

  /** Enrols the device (idempotent on the server): 'accepted' or 'pending' approval. */
  async enrol(inventory: Inventory, token: string | undefined): Promise<'accepted' | 'pending'> {
    const { body } = await this.#post('/api/v1/device/enrol', {
      publicKey: this.publicKeyHex,
      ...(token !== undefined ? { token } : {}),
      inventory,
    });
    const status = (body as { status?: unknown }).status;
    if (status === 'accepted' || status === 'pending') return status;
    throw new FerryError(
      'DEVICE_NOT_APPROVED',
      `the server lists this device as ${String(status)}`,
    );
  }

  /** Checks in with the inventory; the answer's assignment is not verified here. */
  async checkin(inventory: Inventory): Promise<CheckinAnswer> {
    const { body, nonce } = await this.#call('/api/v1/device/checkin', { inventory });
    const b = body as Record<string, unknown>;
    const poll = b.pollSeconds;
    const repo = b.repositoryUrl;
    if (
      typeof poll !== 'number' ||
      !Number.isSafeInteger(poll) ||
      poll < 1 ||
      !(repo === null || (typeof repo === 'string' && repo.length <= 2048)) ||
      !('assignment' in b)
    )
      throw unreachable('check-in answer does not match the device protocol');
    return { pollSeconds: poll, assignment: b.assignment, repositoryUrl: repo, nonce };
  }

  /** Reports progress or the outcome of the device's assignment in `r.rolloutId`. */
  async report(r: ReportRequest): Promise<{ state: string; applied: boolean }> {
    const { body } = await this.#call('/api/v1/device/report', r);
    const b = body as { state?: unknown; applied?: unknown };
    if (typeof b.state !== 'string' || typeof b.applied !== 'boolean')
      throw unreachable('report answer does not match the device protocol');
    return { state: b.state, applied: b.applied };
  }

  /** Headers of a request signed with the device key. */
  #signed(path: string, body: Buffer): Record<string, string> {
    return deviceRequestHeaders({ method: 'POST', path, body, deviceId: this.deviceId }, (text) =>
      sign(null, Buffer.from(text), this.#key.key).toString('base64'),
    );
  }

  async #post(
    path: string,
    value: unknown,
    session?: DeviceSession,
  ): Promise<{ body: unknown; nonce: string }> {
    const body = Buffer.from(JSON.stringify(value));
    const headers = session ? session.headers('POST', path, body) : this.#signed(path, body);
    const nonce = headers[DEVICE_HEADERS.nonce]!;
    let res: Response;
    let bytes: Buffer;
    try {
      res = await fetch(this.url + path, {
        method: 'POST',
        headers,
        body,
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
      const len = Number(res.headers.get('content-length') ?? 0);
      if (len > MAX_ANSWER_BYTES) throw unreachable(`${path}: answer of ${len} bytes`);
      bytes = Buffer.from(await res.arrayBuffer());
    } catch (e) {
      if (e instanceof FerryError) throw e;
      throw unreachable(`${this.url}${path}: ${(e as Error).message}`, e);
    }
    if (bytes.length > MAX_ANSWER_BYTES) throw unreachable(`${path}: answer too large`);
    if (res.status === 404 && path.endsWith('/session')) throw new SessionUnsupported();
    let parsed: unknown;
    try {
      parsed = parseJsonBounded(bytes, { maxBytes: MAX_ANSWER_BYTES, maxDepth: 16 });
    } catch (e) {
      throw unreachable(`${path}: answer is not JSON (HTTP ${res.status})`, e);
    }
    if (res.status >= 300) throw serverError(res.status, parsed, path);
    if (typeof parsed !== 'object' || parsed === null)
      throw unreachable(`${path}: answer is not a JSON object`);
    return { body: parsed, nonce };
  }
}
