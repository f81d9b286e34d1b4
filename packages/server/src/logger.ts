/**
 * The server's logger: structured events with a stable event id (`http.request`,
 * `rollout.paused`, ...) and fields. The library only calls it; `jsonLogger` writes one JSON
 * object per line for the CLI, `nullLogger` drops everything (tests, embedding).
 */
import type { Writable } from 'node:stream';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** Receives every event the server emits. */
export interface Logger {
  log(level: LogLevel, event: string, fields?: Record<string, unknown>): void;
}

/** Drops every event. */
export const nullLogger: Logger = { log: () => undefined };

const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/**
 * One JSON object per line: `{"time","level","event",...fields}`.
 *
 * @example
 * createServer({ database, logger: jsonLogger(process.stdout, 'info') });
 */
export function jsonLogger(out: Writable, min: LogLevel = 'info'): Logger {
  return {
    log(level, event, fields) {
      if (RANK[level] < RANK[min]) return;
      out.write(JSON.stringify({ time: new Date().toISOString(), level, event, ...fields }) + '\n');
    },
  };
}
