/**
 * A minimal device-side client of the protocol: an ed25519 key, signed requests, enrol,
 * check-in and report, with the assignment checked by protocol's verifyAssignment. After
 * enrolment it works under a device session (protocol/device-session.ts) unless told not to.
 * Used by `ferry sim`, the benchmark and the tests; the agent has its own.
 */
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { FerryError, type ErrorCode } from '@ferry/core';
import {
  DEVICE_HEADERS,
  type CheckinResponse,
  type EnrolResponse,
  type Inventory,
  type ReportRequest,
} from '@ferry/protocol';
import { DeviceSession, deviceRequestHeaders, ephemeralKey } from '@ferry/protocol/device-session';
import { deviceIdOf } from './devices.ts';

/** What a signed request returns: the status and parsed JSON body. */
export interface DeviceResponse<T> {
  status: number;
  body: T;
  /** The nonce the request carried (an assignment must echo it). */
  nonce: string;
}

function toError(r: DeviceResponse<unknown>): FerryError {
  const e = (r.body ?? {}) as { code?: string; message?: string };
  return new FerryError((e.code ?? 'INTERNAL') as ErrorCode, e.message ?? `HTTP ${r.status}`);
}

/** A simulated device identity. */
export class DeviceClient {
  readonly baseUrl: string;
  readonly privateKey: KeyObject;
  readonly publicKeyHex: string;
  readonly id: string;
  /** Whether requests after enrolment go under a session (else each is signed). */
  readonly sessions: boolean;
  /** The open session, if any. */
  session: DeviceSession | undefined;

  constructor(baseUrl: string, privateKey?: KeyObject, opts: { sessions?: boolean } = {}) {
    this.baseUrl = baseUrl.replace(/\/$/, '');
    this.sessions = opts.sessions ?? true;
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
  ): Record<string, string> {
    return deviceRequestHeaders({ method, path, body, deviceId: this.id, ...opts }, (text) =>
      sign(null, Buffer.from(text), this.privateKey).toString('base64'),
    );
  }

  /** Opens a device session with a signed request (throws the server's FerryError). */
  async openSession(): Promise<DeviceSession> {
    const r = await this.#open();
    if (r.status >= 300) throw toError(r);
    return this.session!;
  }

  /** Opens a session; on success it becomes `session`. */
  async #open(): Promise<DeviceResponse<unknown>> {
    const eph = ephemeralKey();
    const r = await this.#send<unknown>('/api/v1/device/session', { publicKey: eph.publicKeyHex });
    if (r.status < 300) this.session = DeviceSession.accept(r.body, eph.privateKey, this.id);
    return r;
  }

  async #send<T>(
    path: string,
    value: unknown,
    session?: DeviceSession,
  ): Promise<DeviceResponse<T>> {
    const body = Buffer.from(JSON.stringify(value));
    const headers = session
      ? session.headers('POST', path, body)
      : this.signedHeaders('POST', path, body);
    const res = await fetch(this.baseUrl + path, { method: 'POST', headers, body });
    return {
      status: res.status,
      body: (await res.json()) as T,
      nonce: headers[DEVICE_HEADERS.nonce]!,
    };
  }

  /**
   * Sends a POST, signed or (with sessions, after enrolment) under the session, opening one
   * when there is none or it is about to expire, and once more if the server refuses it
   * (expired, or its key changed). Returns status and body (no throw on HTTP errors).
   */
  async post<T>(path: string, value: unknown): Promise<DeviceResponse<T>> {
    if (!this.sessions || path.endsWith('/enrol') || path.endsWith('/session'))
      return this.#send<T>(path, value);
    const fresh = !this.session?.usable(Date.now());
    if (fresh) {
      const o = await this.#open();
      if (o.status >= 300) return o as DeviceResponse<T>;
    }
    const r = await this.#send<T>(path, value, this.session);
    const code = (r.body as { code?: unknown } | null)?.code;
    if (fresh || r.status !== 401 || code === 'DEVICE_REPLAY') return r;
    this.session = undefined;
    const o = await this.#open();
    if (o.status >= 300) return o as DeviceResponse<T>;
    return this.#send<T>(path, value, this.session);
  }

  /** Like post, but throws the server's FerryError on a non-2xx status. */
  async call<T>(path: string, value: unknown): Promise<DeviceResponse<T>> {
    const r = await this.post<T>(path, value);
    if (r.status >= 300) throw toError(r);
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
