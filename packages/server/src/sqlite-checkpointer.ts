/**
 * WAL checkpoints off the event loop. By default SQLite checkpoints inside the commit that
 * pushes the WAL past 1,000 pages: that commit copies the pages into the database file and
 * waits for two fsyncs, on the thread that serves requests. The server's connection turns
 * automatic checkpoints off instead, and a worker thread with its own connection runs a
 * PASSIVE checkpoint a few times a second (it never blocks writers or readers). SQLite wraps
 * the WAL back to its start once a checkpoint has copied all of it; `journal_size_limit`
 * then trims the file.
 */
import { Worker } from 'node:worker_threads';

/** How often the worker checkpoints. */
export const CHECKPOINT_INTERVAL_MS = 200;

const WORKER = `
const { DatabaseSync } = require('node:sqlite');
const { parentPort, workerData } = require('node:worker_threads');
const db = new DatabaseSync(workerData.path);
db.exec('PRAGMA busy_timeout = 5000');
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');
const timer = setInterval(() => {
  try { checkpoint.get(); } catch (e) { parentPort.postMessage({ error: String(e) }); }
}, workerData.intervalMs);
parentPort.on('message', () => {
  clearInterval(timer);
  try { checkpoint.get(); } catch {}
  db.close();
  parentPort.close();
});
`;

/** A running checkpointer; `stop` runs a last checkpoint and closes its connection. */
export interface Checkpointer {
  stop(): Promise<void>;
}

/**
 * Starts checkpointing the WAL of the database file at `path` from a worker thread. The thread
 * does not keep the process alive. `onError` hears a failed checkpoint (the next one retries).
 */
export function startCheckpointer(
  path: string,
  onError: (message: string) => void = () => undefined,
): Checkpointer {
  const w = new Worker(WORKER, {
    eval: true,
    workerData: { path, intervalMs: CHECKPOINT_INTERVAL_MS },
  });
  w.on('message', (m: { error?: string }) => m.error && onError(m.error));
  w.on('error', (e) => onError(String(e)));
  // After the listeners: a 'message' listener refs the worker's port again.
  w.unref();
  const exited = new Promise<void>((res) => w.once('exit', () => res()));
  return {
    stop() {
      // Held while it finishes, or a process with nothing else to do would exit before it.
      w.ref();
      w.postMessage('stop');
      return exited;
    },
  };
}
