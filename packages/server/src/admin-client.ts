/**
 * A small client of the admin API for scripts, `ferry sim` and tests: logs in, keeps the
 * session cookie, and sends the CSRF token with every state-changing request.
 */
import { FerryError, type ErrorCode } from '@ferry/core';
import type { SessionView } from '@ferry/protocol';

/** Logged-in admin API access. */
export class AdminClient {
  readonly baseUrl: string;
  cookie = '';
  csrfToken = '';

  constructor(baseUrl: string) {
    this.baseUrl = baseUrl.replace(/\/$/, '');
  }

  /** Logs in; throws the server's FerryError on failure. */
  async login(username: string, password: string): Promise<SessionView> {
    const res = await fetch(`${this.baseUrl}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username, password }),
    });
    const body = (await res.json()) as SessionView & { code?: string; message?: string };
    if (!res.ok) throw new FerryError(body.code as ErrorCode, body.message ?? '');
    this.cookie = (res.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
    this.csrfToken = body.csrfToken;
    return body;
  }

  /** A raw request with the session (and CSRF header for non-GET); no throw on HTTP errors. */
  async request(
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; body: unknown }> {
    const headers: Record<string, string> = { cookie: this.cookie };
    if (method !== 'GET') headers['x-csrf-token'] = this.csrfToken;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(this.baseUrl + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text ? (JSON.parse(text) as unknown) : null };
  }

  async #ok<T>(method: string, path: string, body?: unknown): Promise<T> {
    const r = await this.request(method, path, body);
    if (r.status >= 300) {
      const e = r.body as { code?: string; message?: string };
      throw new FerryError((e?.code ?? 'INTERNAL') as ErrorCode, e?.message ?? `HTTP ${r.status}`);
    }
    return r.body as T;
  }

  get<T>(path: string): Promise<T> {
    return this.#ok<T>('GET', path);
  }

  post<T>(path: string, body?: unknown): Promise<T> {
    return this.#ok<T>('POST', path, body ?? {});
  }
}
