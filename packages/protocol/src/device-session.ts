/**
 * Device sessions (docs/server.md, "Device sessions"): a device opens a session with one
 * request signed by its ed25519 key, then authenticates later requests with HMAC-SHA256 under
 * the session key instead of a signature. Timestamp, nonce and replay checks are the same as
 * for signed requests; only the proof of origin is cheaper (microseconds instead of an
 * ed25519 verification).
 *
 * The session key never crosses the wire in the clear: the device sends an ephemeral X25519
 * public key in its signed request, the server answers with its own ephemeral key and the
 * session key masked by a pad derived (HKDF-SHA256) from the X25519 shared secret. An
 * eavesdropper sees neither secret; a forged answer gives the device a key the server does
 * not know, so its requests fail and it opens a new session.
 *
 * The server keeps no session state: a session key is an HMAC, under a server secret, of the
 * device id and the session id, which carries its expiry. Node.js only (node:crypto), hence a
 * separate entry point (`@ferry/protocol/device-session`), outside what the dashboard loads.
 */
import {
  createHash,
  createHmac,
  createPublicKey,
  createSecretKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  randomBytes,
  timingSafeEqual,
  type KeyObject,
} from 'node:crypto';
import { DEVICE_HEADERS, deviceSigningString, sessionExpiry } from './device-auth.ts';
import type { SessionResponse } from './admin-api.ts';

/** Length of a request MAC in base64 (32 bytes). */
export const SESSION_MAC_LENGTH = 44;

/** A new session id expiring at `expiresAt` (ms since the epoch). */
export function newSessionId(expiresAt: number): string {
  return `s1.${String(Math.floor(expiresAt)).padStart(13, '0')}.${randomBytes(16).toString('base64url')}`;
}

/**
 * The server's key of session `sessionId` of device `deviceId`, under its session secret.
 * HMAC keys as KeyObjects (createSecretKey) cost a fifth of Buffer keys per use in Node 24.
 */
export function sessionKey(
  secret: Uint8Array | KeyObject,
  deviceId: string,
  sessionId: string,
): Buffer {
  return createHmac('sha256', secret)
    .update(`ferry-device-session-key-v1\n${deviceId}\n${sessionId}`)
    .digest();
}

/** The MAC of a request's signing string under a session key (base64). */
export function sessionMac(key: Uint8Array | KeyObject, signingString: string): string {
  return createHmac('sha256', key).update(signingString).digest('base64');
}

/** Whether `mac` (base64, as received) is the MAC of `signingString` (constant time). */
export function sessionMacValid(
  key: Uint8Array | KeyObject,
  signingString: string,
  mac: string,
): boolean {
  const got = Buffer.from(mac, 'base64');
  const want = createHmac('sha256', key).update(signingString).digest();
  return got.length === want.length && timingSafeEqual(got, want);
}

/** An ephemeral X25519 key pair; the public half as 64 hex digits. */
export function ephemeralKey(): { privateKey: KeyObject; publicKeyHex: string } {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  const x = publicKey.export({ format: 'jwk' }).x ?? '';
  return { privateKey, publicKeyHex: Buffer.from(x, 'base64url').toString('hex') };
}

function x25519Public(hex: string): KeyObject {
  return createPublicKey({
    key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(hex, 'hex').toString('base64url') },
    format: 'jwk',
  });
}

/** The 32-byte pad masking a session key, from the X25519 shared secret of both halves. */
function pad(privateKey: KeyObject, peerHex: string, deviceId: string, sessionId: string) {
  const shared = diffieHellman({ privateKey, publicKey: x25519Public(peerHex) });
  if (shared.every((b) => b === 0)) throw new Error('X25519 shared secret is all zero');
  return Buffer.from(
    hkdfSync('sha256', shared, sessionId, `ferry-device-session-wrap-v1\n${deviceId}`, 32),
  );
}

function xor(a: Uint8Array, b: Uint8Array): Buffer {
  return Buffer.from(a.map((x, i) => x ^ b[i]!));
}

/**
 * Server side: the answer to a session request: a fresh ephemeral key, and the session key
 * masked for the device whose ephemeral public key is `devicePublicKeyHex`.
 */
export function sessionAnswer(
  secret: Uint8Array | KeyObject,
  deviceId: string,
  devicePublicKeyHex: string,
  expiresAt: number,
): SessionResponse {
  const sessionId = newSessionId(expiresAt);
  const eph = ephemeralKey();
  const p = pad(eph.privateKey, devicePublicKeyHex, deviceId, sessionId);
  return {
    sessionId,
    expiresAt,
    serverKey: eph.publicKeyHex,
    wrappedKey: xor(sessionKey(secret, deviceId, sessionId), p).toString('hex'),
  };
}

/**
 * A device's open session: its id, key and expiry, and the headers of a request made under
 * it.
 *
 * @example
 * const eph = ephemeralKey();
 * // POST /api/v1/device/session { publicKey: eph.publicKeyHex }, signed with the device key
 * const session = DeviceSession.accept(answer, eph.privateKey, deviceId);
 * const headers = session.headers('POST', '/api/v1/device/checkin', body);
 */
export class DeviceSession {
  readonly id: string;
  readonly expiresAt: number;
  readonly deviceId: string;
  readonly #key: Buffer;
  readonly #hmacKey: KeyObject;

  private constructor(id: string, expiresAt: number, deviceId: string, key: Buffer) {
    this.id = id;
    this.expiresAt = expiresAt;
    this.deviceId = deviceId;
    this.#key = key;
    this.#hmacKey = createSecretKey(key);
  }

  /**
   * Unmasks the session key of a server's answer; throws if the answer is malformed (the
   * caller's protocol error). A forged answer is not detected here: the server refuses
   * requests made with a key it did not derive.
   */
  static accept(answer: unknown, privateKey: KeyObject, deviceId: string): DeviceSession {
    const a = (typeof answer === 'object' && answer !== null ? answer : {}) as Record<
      string,
      unknown
    >;
    const hex = (v: unknown) => typeof v === 'string' && /^[0-9a-f]{64}$/.test(v);
    const id = a.sessionId;
    if (typeof id !== 'string' || sessionExpiry(id) === undefined)
      throw new Error('session answer has no valid session id');
    if (!hex(a.serverKey) || !hex(a.wrappedKey))
      throw new Error('session answer has malformed keys');
    const p = pad(privateKey, a.serverKey as string, deviceId, id);
    const key = xor(Buffer.from(a.wrappedKey as string, 'hex'), p);
    return new DeviceSession(id, sessionExpiry(id)!, deviceId, key);
  }

  /** The session as stored by a device that keeps it across restarts (a secret: mode 0600). */
  export(): { sessionId: string; deviceId: string; key: string } {
    return { sessionId: this.id, deviceId: this.deviceId, key: this.#key.toString('hex') };
  }

  /** A stored session back (export's output), or undefined if it is malformed. */
  static restore(v: unknown): DeviceSession | undefined {
    const o = (typeof v === 'object' && v !== null ? v : {}) as Record<string, unknown>;
    const { sessionId, deviceId, key } = o;
    if (typeof sessionId !== 'string' || sessionExpiry(sessionId) === undefined) return undefined;
    if (typeof deviceId !== 'string' || !/^[0-9a-f]{32}$/.test(deviceId)) return undefined;
    if (typeof key !== 'string' || !/^[0-9a-f]{64}$/.test(key)) return undefined;
    return new DeviceSession(
      sessionId,
      sessionExpiry(sessionId)!,
      deviceId,
      Buffer.from(key, 'hex'),
    );
  }

  /** Whether the session is still usable at `now` with `marginMs` to spare. */
  usable(now: number, marginMs = 60_000): boolean {
    return this.expiresAt - marginMs > now;
  }

  /** Headers authenticating one request under the session (a fresh nonce each). */
  headers(
    method: string,
    path: string,
    body: Uint8Array,
    opts: { timestamp?: number; nonce?: string } = {},
  ): Record<string, string> {
    return deviceRequestHeaders(
      { method, path, body, deviceId: this.deviceId, session: this.id, ...opts },
      (text) => sessionMac(this.#hmacKey, text),
    );
  }
}

/**
 * The headers of one device request (a fresh nonce and the current time unless given), signed
 * or MACed: `authenticate` turns the signing string into the `x-ferry-signature` value (an
 * ed25519 signature in base64, or a session's MAC).
 *
 * @example
 * const h = deviceRequestHeaders({ method: 'POST', path, body, deviceId },
 *   (text) => sign(null, Buffer.from(text), key).toString('base64'));
 */
export function deviceRequestHeaders(
  r: {
    method: string;
    path: string;
    body: Uint8Array;
    deviceId: string;
    session?: string;
    timestamp?: number;
    nonce?: string;
  },
  authenticate: (signingString: string) => string,
): Record<string, string> {
  const timestamp = r.timestamp ?? Date.now();
  const nonce = r.nonce ?? randomBytes(16).toString('base64url');
  const text = deviceSigningString({
    method: r.method,
    path: r.path,
    timestamp,
    nonce,
    bodySha256: createHash('sha256').update(r.body).digest('hex'),
    deviceId: r.deviceId,
    ...(r.session !== undefined ? { session: r.session } : {}),
  });
  return {
    'content-type': 'application/json',
    [DEVICE_HEADERS.device]: r.deviceId,
    [DEVICE_HEADERS.timestamp]: String(timestamp),
    [DEVICE_HEADERS.nonce]: nonce,
    ...(r.session !== undefined ? { [DEVICE_HEADERS.session]: r.session } : {}),
    [DEVICE_HEADERS.signature]: authenticate(text),
  };
}
