/**
 * Verifies device requests (protocol/device-auth.ts): signature by the device's enrolled key
 * over method, path, timestamp, nonce, body hash and id, or the HMAC under a device session's
 * key (protocol/device-session.ts), whose session was opened by such a signed request;
 * timestamp within the skew window; a nonce never seen before (stored until the window has
 * passed, so a replay is refused even after a restart or on another server instance).
 *
 * Parsed public keys are cached: a device id is the hash of its key, so the key cached for an
 * id can never be another one. Session keys that verified a request are cached too: each is a
 * function of the server secret, the device id and the session id. Whether the device may act
 * (enrolled, accepted) is never cached: the nonce-spending transaction reads it on every
 * request, so a rejected or deleted device is refused at once. Signatures are verified on
 * libuv's thread pool, in parallel with the event loop.
 */
import { createHash, createPublicKey, createSecretKey, verify, type KeyObject } from 'node:crypto';
import type { Kysely } from 'kysely';
import { FerryError } from '@ferry/core';
import {
  DEVICE_CLOCK_SKEW_MS,
  DEVICE_HEADERS,
  DEVICE_ID_RE,
  NONCE_RE,
  deviceSigningString,
  sessionExpiry,
  type SessionResponse,
} from '@ferry/protocol';
import {
  SESSION_MAC_LENGTH,
  sessionAnswer,
  sessionKey,
  sessionMacValid,
} from '@ferry/protocol/device-session';
import type { CheckinStore, NonceSpend } from './checkin-store.ts';
import type { FleetDb } from './db-schema.ts';

/** An ed25519 public KeyObject from 64 hex digits; DEVICE_AUTH_FAILED if malformed. */
export function publicKeyFromHex(hex: string): KeyObject {
  try {
    const x = Buffer.from(hex, 'hex');
    if (x.length !== 32) throw new Error('not 32 bytes');
    return createPublicKey({
      key: { kty: 'OKP', crv: 'Ed25519', x: x.toString('base64url') },
      format: 'jwk',
    });
  } catch (e) {
    throw new FerryError('DEVICE_AUTH_FAILED', 'device public key is malformed', { cause: e });
  }
}

/** The verified facts of one device request (its nonce not yet spent). */
export interface DeviceRequest extends NonceSpend {
  timestamp: number;
  body: Uint8Array;
}

/** The request as the verifier needs it. */
export interface RawDeviceRequest {
  method: string;
  path: string;
  header(name: string): string | undefined;
  body: Uint8Array;
}

function headers(req: RawDeviceRequest, now: number) {
  const deviceId = req.header(DEVICE_HEADERS.device) ?? '';
  const nonce = req.header(DEVICE_HEADERS.nonce) ?? '';
  const ts = req.header(DEVICE_HEADERS.timestamp) ?? '';
  const sig = req.header(DEVICE_HEADERS.signature) ?? '';
  const session = req.header(DEVICE_HEADERS.session);
  if (
    !DEVICE_ID_RE.test(deviceId) ||
    !NONCE_RE.test(nonce) ||
    !/^\d{1,15}$/.test(ts) ||
    sig.length !== (session === undefined ? 88 : SESSION_MAC_LENGTH) ||
    (session !== undefined && sessionExpiry(session) === undefined)
  )
    throw new FerryError(
      'DEVICE_AUTH_FAILED',
      'missing or malformed device authentication headers',
    );
  const timestamp = Number(ts);
  if (Math.abs(now - timestamp) > DEVICE_CLOCK_SKEW_MS)
    throw new FerryError('DEVICE_REPLAY', 'request timestamp is outside the allowed clock skew');
  return { deviceId, nonce, timestamp, sig, session };
}

function signingString(req: RawDeviceRequest, h: ReturnType<typeof headers>): string {
  return deviceSigningString({
    method: req.method,
    path: req.path,
    timestamp: h.timestamp,
    nonce: h.nonce,
    bodySha256: createHash('sha256').update(req.body).digest('hex'),
    deviceId: h.deviceId,
    ...(h.session !== undefined ? { session: h.session } : {}),
  });
}

/** Checks one device request's signature with `key` (on the thread pool). */
async function checkSignature(
  req: RawDeviceRequest,
  h: ReturnType<typeof headers>,
  key: KeyObject,
): Promise<void> {
  const sig = Buffer.from(h.sig, 'base64');
  const ok =
    h.session === undefined &&
    sig.length === 64 &&
    (await new Promise<boolean>((res) =>
      verify(null, Buffer.from(signingString(req, h)), key, sig, (e, valid) => res(!e && valid)),
    ));
  if (!ok) throw new FerryError('DEVICE_AUTH_FAILED', 'device request signature does not verify');
}

function facts(req: RawDeviceRequest, h: ReturnType<typeof headers>): DeviceRequest {
  return {
    deviceId: h.deviceId,
    nonce: h.nonce,
    timestamp: h.timestamp,
    expiresAt: h.timestamp + DEVICE_CLOCK_SKEW_MS,
    body: req.body,
  };
}

/** Refuses a replayed nonce or an unknown device found while spending a nonce. */
export function refuse(kind: 'replay' | 'unknown'): never {
  if (kind === 'replay')
    throw new FerryError('DEVICE_REPLAY', 'nonce already used (replayed request)');
  throw new FerryError('DEVICE_AUTH_FAILED', 'unknown device');
}

const KEY_CACHE_MAX = 200_000;

/** Adds to a key cache of at most KEY_CACHE_MAX entries, oldest first out (Map insertion order). */
function remember(cache: Map<string, KeyObject>, id: string, key: KeyObject): void {
  if (cache.size >= KEY_CACHE_MAX) cache.delete(cache.keys().next().value!);
  cache.set(id, key);
}

/** How long a device session lasts unless the server is told otherwise: a day. */
export const SESSION_TTL_MS = 24 * 60 * 60 * 1000;

/** Verifies device requests against the registry. */
export class DeviceAuthenticator {
  readonly #db: Kysely<FleetDb>;
  readonly #store: CheckinStore;
  readonly #keys = new Map<string, KeyObject>();
  readonly #sessionSecret: KeyObject;
  readonly #sessionTtlMs: number;
  /** Session keys by device id and session id (pure functions of the secret: no authority). */
  readonly #sessionKeys = new Map<string, KeyObject>();

  /**
   * `sessionSecret` derives the session keys (Director.sessionSecret); `sessionTtlMs` is how
   * long a session opened now lasts.
   */
  constructor(
    db: Kysely<FleetDb>,
    store: CheckinStore,
    sessionSecret: Uint8Array,
    sessionTtlMs = SESSION_TTL_MS,
  ) {
    this.#db = db;
    this.#store = store;
    this.#sessionSecret = createSecretKey(sessionSecret);
    this.#sessionTtlMs = sessionTtlMs;
  }

  /** Checks a request's MAC under its session's key (synchronous: two HMACs). */
  #checkSession(req: RawDeviceRequest, h: ReturnType<typeof headers>, now: number): void {
    const session = h.session!;
    if (sessionExpiry(session)! <= now)
      throw new FerryError('DEVICE_SESSION_EXPIRED', 'device session has expired');
    const id = `${h.deviceId} ${session}`;
    const cached = this.#sessionKeys.get(id);
    const key = cached ?? createSecretKey(sessionKey(this.#sessionSecret, h.deviceId, session));
    if (!sessionMacValid(key, signingString(req, h), h.sig))
      throw new FerryError(
        'DEVICE_AUTH_FAILED',
        'device request MAC does not verify under its session',
      );
    // Only a key that verified a request is kept, so made-up session ids cannot evict them.
    if (!cached) remember(this.#sessionKeys, id, key);
  }

  async #key(deviceId: string): Promise<KeyObject> {
    const hit = this.#keys.get(deviceId);
    if (hit) return hit;
    const hex = await this.#store.publicKey(deviceId);
    if (hex === undefined) throw new FerryError('DEVICE_AUTH_FAILED', 'unknown device');
    const key = publicKeyFromHex(hex);
    remember(this.#keys, deviceId, key);
    return key;
  }

  /**
   * Checks headers, clock skew and signature of an enrolled device's request. The caller must
   * then spend the nonce in the transaction that reads the device (CheckinStore).
   */
  async authenticate(req: RawDeviceRequest, now: number): Promise<DeviceRequest> {
    const h = headers(req, now);
    if (h.session !== undefined) this.#checkSession(req, h, now);
    else await checkSignature(req, h, await this.#key(h.deviceId));
    return facts(req, h);
  }

  /**
   * Opens a session for an accepted device: the request must be signed with the device key
   * (not made under another session); its nonce is spent like any other.
   */
  async openSession(
    req: RawDeviceRequest,
    devicePublicKeyHex: string,
    now: number,
  ): Promise<SessionResponse> {
    if (req.header(DEVICE_HEADERS.session) !== undefined)
      throw new FerryError(
        'DEVICE_AUTH_FAILED',
        'a session is opened with a request signed by the device key',
      );
    const d = await this.verify(req, now, { accepted: true });
    return sessionAnswer(
      this.#sessionSecret,
      d.deviceId,
      devicePublicKeyHex,
      now + this.#sessionTtlMs,
    );
  }

  /**
   * Verifies a request of an enrolled device and spends its nonce; with `accepted`, refuses a
   * device that is not accepted (DEVICE_NOT_APPROVED).
   */
  async verify(
    req: RawDeviceRequest,
    now: number,
    opts: { accepted?: boolean } = {},
  ): Promise<DeviceRequest> {
    const d = await this.authenticate(req, now);
    const r = await this.#store.spend(d);
    if (r.kind !== 'spent') refuse(r.kind);
    if (opts.accepted && r.status !== 'accepted')
      throw new FerryError('DEVICE_NOT_APPROVED', `device is ${r.status}`);
    return d;
  }

  /** Verifies an enrolment request, signed by the key it offers (proof of possession). */
  async verifyEnrolment(
    req: RawDeviceRequest,
    publicKeyHex: string,
    expectedId: string,
    now: number,
  ): Promise<DeviceRequest> {
    const h = headers(req, now);
    if (h.deviceId !== expectedId)
      throw new FerryError('DEVICE_AUTH_FAILED', 'device id does not match the offered key');
    await checkSignature(req, h, publicKeyFromHex(publicKeyHex));
    const d = facts(req, h);
    const r = await this.#db
      .insertInto('request_nonces')
      .values({ device_id: d.deviceId, nonce: d.nonce, expires_at: d.expiresAt })
      .onConflict((oc) => oc.columns(['device_id', 'nonce']).doNothing())
      .returning('nonce')
      .executeTakeFirst();
    if (!r) refuse('replay');
    return d;
  }

  /** Drops a cached key (not needed for safety: status is read per request; frees memory). */
  forget(deviceId: string): void {
    this.#keys.delete(deviceId);
  }

  /** Deletes nonces whose timestamps the skew window refuses anyway. */
  async pruneNonces(now: number): Promise<void> {
    await this.#db.deleteFrom('request_nonces').where('expires_at', '<', now).execute();
  }
}
