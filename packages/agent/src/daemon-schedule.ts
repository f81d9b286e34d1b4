/**
 * When the update daemon acts: check delays with jitter and backoff, and the maintenance
 * window. Pure functions over a clock and a random source, so tests decide both.
 */
import { setTimeout as sleepTimer } from 'node:timers/promises';
import type { DaemonConfig } from './config.ts';

/** Time as the daemon sees it: injectable so tests run a week of schedule in milliseconds. */
export interface DaemonClock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Resolves after `ms`, or early (never rejecting) when `signal` aborts. */
  sleep(ms: number, signal: AbortSignal): Promise<void>;
}

/** setTimeout caps at 2^31-1 ms (24.8 days); longer timers would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The real clock. */
export const systemClock: DaemonClock = {
  now: () => Date.now(),
  async sleep(ms, signal) {
    let left = ms;
    while (left > 0 && !signal.aborted) {
      const step = Math.min(left, MAX_TIMER_MS);
      await sleepTimer(step, undefined, { signal }).catch(() => undefined);
      left -= step;
    }
  },
};

/** The first retry after a failed cycle; doubled per further failure, capped at the interval. */
export const RETRY_BASE_SECONDS = 60;

/**
 * Milliseconds until the next check. After a success: the interval plus up to `jitter` (so a
 * fleet switched on together does not hit the repository together). After `failures`
 * consecutive failures: 60 s, 120 s, 240 s ... capped at the interval, with proportional jitter.
 * @example
 * nextCheckDelay({ intervalSeconds: 21600, jitterSeconds: 1800 }, 0, Math.random);
 */
export function nextCheckDelay(
  cfg: Pick<DaemonConfig, 'intervalSeconds' | 'jitterSeconds'>,
  failures: number,
  random: () => number,
): number {
  if (failures <= 0) return Math.round((cfg.intervalSeconds + random() * cfg.jitterSeconds) * 1000);
  const base = Math.min(cfg.intervalSeconds, RETRY_BASE_SECONDS * 2 ** Math.min(failures - 1, 30));
  return Math.round((base + random() * Math.min(cfg.jitterSeconds, base)) * 1000);
}

/** Milliseconds before the first check after start: only the jitter. */
export function firstCheckDelay(
  cfg: Pick<DaemonConfig, 'jitterSeconds'>,
  random: () => number,
): number {
  return Math.round(random() * cfg.jitterSeconds * 1000);
}

/** Minutes after local midnight. */
function minuteOfDay(d: Date): number {
  return d.getHours() * 60 + d.getMinutes();
}

/** Whether `now` (local time) is inside the window; `end < start` wraps past midnight. */
export function inWindow(now: Date, w: { start: number; end: number }): boolean {
  const m = minuteOfDay(now);
  return w.start < w.end ? m >= w.start && m < w.end : m >= w.start || m < w.end;
}

/** Milliseconds until the window opens next; 0 inside it. */
export function msUntilWindow(now: Date, w: { start: number; end: number }): number {
  if (inWindow(now, w)) return 0;
  const t = new Date(now);
  t.setHours(Math.floor(w.start / 60), w.start % 60, 0, 0);
  if (t.getTime() <= now.getTime()) t.setDate(t.getDate() + 1);
  return t.getTime() - now.getTime();
}

/** "HH:MM-HH:MM", as written in system.toml. */
export function formatWindow(w: { start: number; end: number }): string {
  const hm = (m: number) =>
    `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;
  return `${hm(w.start)}-${hm(w.end)}`;
}
