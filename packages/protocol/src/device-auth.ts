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
}

/**
 * The exact text a device signs (UTF-8): one field per line, after a version line.
 *
 * @example
 * const text = deviceSigningString({ method: 'POST', path: '/api/v1/device/checkin',
 *   timestamp: Date.now(), nonce, bodySha256, deviceId });
 * const sig = sign(null, Buffer.from(text), privateKey).toString('base64');
 */
export function deviceSigningString(p: DeviceRequestParts): string {
  return [
    'ferry-device-request-v1',
    p.method.toUpperCase(),
    p.path,
    String(p.timestamp),
    p.nonce,
    p.bodySha256,
    p.deviceId,
  ].join('\n');
}
