/**
 * Verifies device requests (protocol/device-auth.ts): signature by the device's enrolled key
 * over method, path, timestamp, nonce, body hash and id; timestamp within the skew window; a
 * nonce never seen before (stored until the window has passed, so a replay is refused even
 * after a restart or on another server instance). Public keys are cached briefly; approval
 * changes invalidate the cache.
 */
import { createHash, createPublicKey, verify, type KeyObject } from 'node:crypto';
import type { Kysely } from 'kysely';
import { FerryError } from '@ferry/core';
import {
  DEVICE_CLOCK_SKEW_MS,
  DEVICE_HEADERS,
  DEVICE_ID_RE,
  NONCE_RE,
  deviceSigningString,
} from '@ferry/protocol';
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

/** The verified facts of one device request. */
export interface DeviceRequest {
  deviceId: string;
  nonce: string;
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
  if (
    !DEVICE_ID_RE.test(deviceId) ||
    !NONCE_RE.test(nonce) ||
    !/^\d{1,15}$/.test(ts) ||
    sig.length !== 88
  )
    throw new FerryError(
      'DEVICE_AUTH_FAILED',
      'missing or malformed device authentication headers',
    );
  const timestamp = Number(ts);
  if (Math.abs(now - timestamp) > DEVICE_CLOCK_SKEW_MS)
    throw new FerryError('DEVICE_REPLAY', 'request timestamp is outside the allowed clock skew');
  return { deviceId, nonce, timestamp, sig: Buffer.from(sig, 'base64') };
}

/** Checks one device request; `key` is the enrolled key (or, at enrolment, the offered one). */
function checkSignature(
  req: RawDeviceRequest,
  h: ReturnType<typeof headers>,
  key: KeyObject,
): void {
  const text = deviceSigningString({
    method: req.method,
    path: req.path,
    timestamp: h.timestamp,
    nonce: h.nonce,
    bodySha256: createHash('sha256').update(req.body).digest('hex'),
    deviceId: h.deviceId,
  });
  if (h.sig.length !== 64 || !verify(null, Buffer.from(text), key, h.sig))
    throw new FerryError('DEVICE_AUTH_FAILED', 'device request signature does not verify');
}

/** Verifies device requests against the registry. */
export class DeviceAuthenticator {
  readonly #db: Kysely<FleetDb>;
  readonly #keys = new Map<string, { key: KeyObject; at: number }>();
  readonly #ttlMs: number;

  constructor(db: Kysely<FleetDb>, ttlMs = 30_000) {
    this.#db = db;
    this.#ttlMs = ttlMs;
  }

  async #key(deviceId: string, now: number): Promise<KeyObject> {
    const hit = this.#keys.get(deviceId);
    if (hit && now - hit.at < this.#ttlMs) return hit.key;
    const row = await this.#db
      .selectFrom('devices')
      .select('public_key')
      .where('id', '=', deviceId)
      .executeTakeFirst();
    if (!row) throw new FerryError('DEVICE_AUTH_FAILED', 'unknown device');
    const key = publicKeyFromHex(row.public_key);
    if (this.#keys.size > 200_000) this.#keys.clear();
    this.#keys.set(deviceId, { key, at: now });
    return key;
  }

  /** Stores the nonce; DEVICE_REPLAY if it was used before. */
  async #spendNonce(deviceId: string, nonce: string, timestamp: number): Promise<void> {
    const r = await this.#db
      .insertInto('request_nonces')
      .values({ device_id: deviceId, nonce, expires_at: timestamp + DEVICE_CLOCK_SKEW_MS })
      .onConflict((oc) => oc.columns(['device_id', 'nonce']).doNothing())
      .returning('nonce')
      .executeTakeFirst();
    if (!r) throw new FerryError('DEVICE_REPLAY', 'nonce already used (replayed request)');
  }

  /** Verifies a request of an enrolled device. */
  async verify(req: RawDeviceRequest, now: number): Promise<DeviceRequest> {
    const h = headers(req, now);
    checkSignature(req, h, await this.#key(h.deviceId, now));
    await this.#spendNonce(h.deviceId, h.nonce, h.timestamp);
    return { deviceId: h.deviceId, nonce: h.nonce, timestamp: h.timestamp, body: req.body };
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
    checkSignature(req, h, publicKeyFromHex(publicKeyHex));
    await this.#spendNonce(h.deviceId, h.nonce, h.timestamp);
    return { deviceId: h.deviceId, nonce: h.nonce, timestamp: h.timestamp, body: req.body };
  }

  /** Drops a cached key (the device was rejected or re-keyed). */
  forget(deviceId: string): void {
    this.#keys.delete(deviceId);
  }

  /** Deletes nonces whose timestamps the skew window refuses anyway. */
  async pruneNonces(now: number): Promise<void> {
    await this.#db.deleteFrom('request_nonces').where('expires_at', '<', now).execute();
  }
}
