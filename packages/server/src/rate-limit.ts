/**
 * Login throttling: after 10 failed logins for one username within 15 minutes, further
 * attempts are refused (SERVER_RATE_LIMITED) until the window passes (password guessing).
 */
import { FerryError } from '@ferry/core';

const MAX_FAILURES = 10;
const WINDOW_MS = 15 * 60 * 1000;

/** Failed-login counts per username, in memory. */
export class LoginLimiter {
  readonly #fails = new Map<string, { n: number; since: number }>();

  /** SERVER_RATE_LIMITED if `username` has failed too often recently. */
  check(username: string, now: number): void {
    const f = this.#fails.get(username);
    if (f && now - f.since < WINDOW_MS && f.n >= MAX_FAILURES)
      throw new FerryError('SERVER_RATE_LIMITED', 'too many failed logins; retry later');
  }

  fail(username: string, now: number): void {
    const f = this.#fails.get(username);
    if (!f || now - f.since >= WINDOW_MS) this.#fails.set(username, { n: 1, since: now });
    else f.n++;
    if (this.#fails.size > 100_000) this.#fails.clear();
  }

  succeed(username: string): void {
    this.#fails.delete(username);
  }
}
