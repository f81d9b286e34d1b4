/**
 * A minimal device-side client of the protocol: an ed25519 key, signed requests, enrol,
 * check-in and report, with the assignment checked by protocol's verifyAssignment. Used by
 * `ferry sim`, the benchmark and the tests; the agent has its own.
 */
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { FerryError, type ErrorCode } from '@ferry/core';
import {
  DEVICE_HEADERS,
  deviceSigningString,
  type CheckinResponse,
  type EnrolResponse,
  type Inventory,
  type ReportRequest,
} from '@ferry/protocol';
import { deviceIdOf } from './devices.ts';

/** What a signed request returns: the status and parsed JSON body. */
export interface DeviceResponse<T> {
  status: number;
  body: T;
  /** The nonce the request carried (an assignment must echo it). */
  nonce: string;
}

/** A simulated device identity. */
export class DeviceClient {
  readonly baseUrl: string;
  readonly privateKey: KeyObject;
  readonly publicKeyHex: string;
  readonly id: string;

  constructor(baseUrl: string, privateKey?: KeyObject) {
    this.baseUrl = baseUrl.replace(/\/$/, '');
    this.privateKey = privateKey ?? generateKeyPairSync('ed25519').privateKey;
    const jwk = this.privateKey.export({ format: 'jwk' });
    this.publicKeyHex = Buffer.from(jwk.x ?? '', 'base64url').toString('hex');
    this.id = deviceIdOf(this.publicKeyHex);
  }

  /** Headers of a signed request (exposed for tests that tamper with them). */
  signedHeaders(
    method: string,
    path: string,
    body: Buffer,
    opts: { timestamp?: number; nonce?: string } = {},
  ) {
    const timestamp = opts.timestamp ?? Date.now();
    const nonce = opts.nonce ?? randomBytes(16).toString('base64url');
    const text = deviceSigningString({
      method,
      path,
      timestamp,
      nonce,
      bodySha256: createHash('sha256').update(body).digest('hex'),
      deviceId: this.id,
    });
    return {
      'content-type': 'application/json',
      [DEVICE_HEADERS.device]: this.id,
      [DEVICE_HEADERS.timestamp]: String(timestamp),
      [DEVICE_HEADERS.nonce]: nonce,
      [DEVICE_HEADERS.signature]: sign(null, Buffer.from(text), this.privateKey).toString('base64'),
    };
  }

  /** Sends a signed POST and returns status and body (no throw on HTTP errors). */
  async post<T>(path: string, value: unknown): Promise<DeviceResponse<T>> {
    const body = Buffer.from(JSON.stringify(value));
    const headers = this.signedHeaders('POST', path, body);
    const res = await fetch(this.baseUrl + path, { method: 'POST', headers, body });
    return {
      status: res.status,
      body: (await res.json()) as T,
      nonce: headers[DEVICE_HEADERS.nonce],
    };
  }

  /** Like post, but throws the server's FerryError on a non-2xx status. */
  async call<T>(path: string, value: unknown): Promise<DeviceResponse<T>> {
    const r = await this.post<T>(path, value);
    if (r.status >= 300) {
      const e = r.body as { code?: string; message?: string };
      throw new FerryError((e.code ?? 'INTERNAL') as ErrorCode, e.message ?? `HTTP ${r.status}`);
    }
    return r;
  }

  enrol(inventory: Inventory, token?: string) {
    return this.call<EnrolResponse>('/api/v1/device/enrol', {
      publicKey: this.publicKeyHex,
      token,
      inventory,
    });
  }

  checkin(inventory: Inventory) {
    return this.call<CheckinResponse>('/api/v1/device/checkin', { inventory });
  }

  report(r: ReportRequest) {
    return this.call<{ state: string; applied: boolean }>('/api/v1/device/report', r);
  }
}
