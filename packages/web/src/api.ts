/// <reference lib="dom" />
/**
 * The admin API as the dashboard calls it: same origin, the session cookie (HttpOnly, Path=/api/)
 * sent by the browser, and the session's CSRF token echoed in `x-csrf-token` on every POST.
 */
import type { ErrorBody, Role, SessionView } from '@ferry/protocol';
import { ROLE_NAMES } from './states.ts';

/** An error answer of the API, with its stable code. */
export class ApiError extends Error {
  readonly code: string;
  readonly status: number;
  constructor(status: number, body: ErrorBody) {
    super(body.message);
    this.code = body.code;
    this.status = status;
  }
}

const BASE = '/api/v1';
let session: SessionView | null = null;

/** The logged-in session, or null. */
export function currentSession(): SessionView | null {
  return session;
}

async function call<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  if (method === 'POST') {
    headers['content-type'] = 'application/json';
    if (session) headers['x-csrf-token'] = session.csrfToken;
  }
  const res = await fetch(BASE + path, {
    method,
    headers,
    credentials: 'same-origin',
    body: method === 'POST' ? JSON.stringify(body ?? {}) : null,
  });
  const text = await res.text();
  let parsed: unknown = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = { code: 'INTERNAL', message: `HTTP ${res.status}` };
  }
  if (!res.ok) {
    const e = (parsed ?? {}) as Partial<ErrorBody>;
    if (res.status === 401) session = null;
    throw new ApiError(res.status, {
      code: e.code ?? 'INTERNAL',
      message: e.message ?? `HTTP ${res.status}`,
    });
  }
  return parsed as T;
}

/** GET `path` under /api/v1. */
export function get<T>(path: string): Promise<T> {
  return call<T>('GET', path);
}

/** POST `body` to `path` under /api/v1 with the CSRF header. */
export function post<T>(path: string, body?: unknown): Promise<T> {
  return call<T>('POST', path, body);
}

/** Logs in; keeps the CSRF token for later requests. */
export async function login(username: string, password: string): Promise<SessionView> {
  session = await call<SessionView>('POST', '/auth/login', { username, password });
  return session;
}

/** The current session from the cookie (after a reload), or null when not logged in. */
export async function restore(): Promise<SessionView | null> {
  try {
    session = await get<SessionView>('/auth/me');
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return null;
    throw e;
  }
  return session;
}

/** Ends the session. */
export async function logout(): Promise<void> {
  try {
    await post('/auth/logout');
  } finally {
    session = null;
  }
}

/** Query string from defined, non-empty values. */
export function query(params: Record<string, string | number | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** Whether the session's role is at least `min`. */
export function can(min: Role): boolean {
  return session !== null && ROLE_NAMES.indexOf(session.role) >= ROLE_NAMES.indexOf(min);
}
