/**
 * How a device authenticates every request (docs/server.md, "Device requests"). The device
 * signs, with the ed25519 key it enrolled, a string binding the method, path with query,
 * timestamp, a fresh nonce, the SHA-256 of the body and its device id. The server refuses a
 * bad signature (forgery), a nonce it has seen (replay) and a timestamp outside the skew
 * window (replay after the nonce was forgotten).
 */

/** Request headers of the device protocol. */
export const DEVICE_HEADERS = {
  device: 'x-ferry-device',
  timestamp: 'x-ferry-timestamp',
  nonce: 'x-ferry-nonce',
  signature: 'x-ferry-signature',
  /** A device session's id (device-session.ts): the signature is then its HMAC-SHA256. */
  session: 'x-ferry-session',
} as const;

/** Largest difference between a request's timestamp and the server clock. */
export const DEVICE_CLOCK_SKEW_MS = 5 * 60 * 1000;

/** A device id: the first 32 hex digits of the SHA-256 of the raw ed25519 public key. */
export const DEVICE_ID_RE = /^[0-9a-f]{32}$/;

/** A nonce: 16 to 64 characters of base64url. */
export const NONCE_RE = /^[A-Za-z0-9_-]{16,64}$/;

/** The fields a device request signature covers. */
export interface DeviceRequestParts {
  method: string;
  /** Path and query as sent, e.g. `/api/v1/device/checkin`. */
  path: string;
  /** Milliseconds since the epoch, device clock. */
  timestamp: number;
  nonce: string;
  /** Lowercase hex SHA-256 of the exact body bytes (of nothing for an empty body). */
  bodySha256: string;
  deviceId: string;
  /** The session the request is authenticated under (HMAC instead of an ed25519 signature). */
  session?: string;
}

/** A device session id: `s1.<expiry, ms since the epoch>.<22 random base64url characters>`. */
export const SESSION_ID_RE = /^s1\.(\d{13})\.[A-Za-z0-9_-]{22}$/;

/** The expiry (ms since the epoch) a session id carries, or undefined if it is malformed. */
export function sessionExpiry(id: string): number | undefined {
  const m = SESSION_ID_RE.exec(id);
  return m ? Number(m[1]) : undefined;
}

/**
 * The exact text a device signs (UTF-8): one field per line, after a version line. A request
 * made under a session has another version line and the session id as a last line, so a MAC
 * can never stand for a signature or for another session's request.
 *
 * @example
 * const text = deviceSigningString({ method: 'POST', path: '/api/v1/device/checkin',
 *   timestamp: Date.now(), nonce, bodySha256, deviceId });
 * const sig = sign(null, Buffer.from(text), privateKey).toString('base64');
 */
export function deviceSigningString(p: DeviceRequestParts): string {
  const lines = [
    p.session === undefined ? 'ferry-device-request-v1' : 'ferry-device-session-request-v1',
    p.method.toUpperCase(),
    p.path,
    String(p.timestamp),
    p.nonce,
    p.bodySha256,
    p.deviceId,
  ];
  if (p.session !== undefined) lines.push(p.session);
  return lines.join('\n');
}
