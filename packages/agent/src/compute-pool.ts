/**
 * Worker threads for the CPU-heavy part of an install: decompressing and verifying chunks,
 * hashing dm-verity leaves and the running SHA-256 of a whole image. The main thread keeps the
 * I/O and the order; the workers use the cores. One worker per core (at least one), each job to
 * the least busy worker, except a running digest, which stays on one worker to keep its order.
 */
import { getCompileCacheDir } from 'node:module';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { FerryError, type ErrorCode } from '@ferry/core';
import {
  ownBuffer,
  type ComputeJob,
  type ComputeReply,
  type DecodeItem,
  type SharedView,
} from './compute-worker.ts';

/** A job without its sequence number (Omit over each member of the union). */
type JobBody = ComputeJob extends unknown
  ? ComputeJob extends infer J
    ? J extends unknown
      ? Omit<J, 'seq'>
      : never
    : never
  : never;

interface Pending {
  resolve: (b: Buffer) => void;
  reject: (e: unknown) => void;
  worker: number;
}

export class ComputePool {
  readonly #workers: Worker[] = [];
  readonly #busy: number[] = [];
  readonly #pending = new Map<number, Pending>();
  #seq = 0;
  #streams = 0;

  constructor(size = availableParallelism()) {
    // A compile cache the process enabled by call reaches the workers only through their
    // environment; with it a worker starts in about half the CPU time.
    const cache = process.env.NODE_COMPILE_CACHE ? undefined : getCompileCacheDir();
    const options = cache ? { env: { ...process.env, NODE_COMPILE_CACHE: cache } } : {};
    for (let i = 0; i < Math.max(1, size); i++) {
      const w = new Worker(new URL('./compute-worker.ts', import.meta.url), options);
      w.on('message', (r: ComputeReply) => this.#settle(r));
      w.on('error', (e) => this.#failAll(e));
      this.#workers.push(w);
      this.#busy.push(0);
    }
  }

  #settle(r: ComputeReply): void {
    const p = this.#pending.get(r.seq);
    if (!p) return;
    this.#pending.delete(r.seq);
    this.#busy[p.worker]!--;
    if ('error' in r) p.reject(new FerryError(r.error.code as ErrorCode, r.error.message));
    else p.resolve(Buffer.from(r.data));
  }

  #failAll(e: unknown): void {
    for (const p of this.#pending.values())
      p.reject(
        new FerryError('INTERNAL', `compute worker failed: ${(e as Error)?.message ?? String(e)}`, {
          cause: e,
        }),
      );
    this.#pending.clear();
  }

  #run(job: JobBody, transfer: ArrayBuffer[], pinned?: number): Promise<Buffer> {
    const seq = this.#seq++;
    let worker = pinned ?? 0;
    if (pinned === undefined)
      for (let i = 1; i < this.#busy.length; i++)
        if (this.#busy[i]! < this.#busy[worker]!) worker = i;
    this.#busy[worker]!++;
    return new Promise((resolve, reject) => {
      this.#pending.set(seq, { resolve, reject, worker });
      this.#workers[worker]!.postMessage({ ...job, seq }, transfer);
    });
  }

  /**
   * Decompresses and verifies a batch of chunks whose zstd frames lie in `frames`, returning their
   * bytes back to back: in `out` when given (a view of a SharedArrayBuffer with room for them all),
   * else in a new buffer. Shared buffers are used in place and must stay untouched until the
   * promise settles; others are handed over (do not use them afterwards).
   */
  async decode(frames: Buffer, items: DecodeItem[], out?: Buffer): Promise<Buffer> {
    const f = shareOrHand(frames);
    if (out && out.buffer instanceof SharedArrayBuffer) {
      const o = shareOrHand(out);
      await this.#run({ op: 'decode', frames: f.view, items, out: o.view }, f.transfer);
      return out;
    }
    return this.#run({ op: 'decode', frames: f.view, items }, f.transfer);
  }

  /**
   * dm-verity level-0 digests of `data`. A view of a SharedArrayBuffer is read in place and must
   * stay unchanged until the promise settles; any other buffer is handed over (do not use it
   * afterwards).
   */
  leaves(salt: Buffer, data: Buffer): Promise<Buffer> {
    const { view, transfer } = shareOrHand(data);
    return this.#run({ op: 'leaves', salt: ownBuffer(Buffer.from(salt)), data: view }, transfer);
  }

  /**
   * A running SHA-256 on one worker: `update` feeds the next bytes (same rules for `data` as
   * `leaves`; updates apply in call order), `end` resolves to the digest.
   *
   * @example
   * const d = pool.digest();
   * await Promise.all([d.update(a), d.update(b)]);
   * const sha256 = (await d.end()).toString('hex');
   */
  digest(): { update(data: Buffer): Promise<unknown>; end(): Promise<Buffer> } {
    const stream = this.#streams++;
    const worker = stream % this.#workers.length;
    return {
      update: (data) => {
        const { view, transfer } = shareOrHand(data);
        return this.#run({ op: 'digest-update', stream, data: view }, transfer, worker);
      },
      end: () => this.#run({ op: 'digest-end', stream }, [], worker),
    };
  }

  async close(): Promise<void> {
    await Promise.all(this.#workers.map((w) => w.terminate()));
  }
}

/** A view of `data` for a job: shared in place when it lives in a SharedArrayBuffer, else handed over. */
function shareOrHand(data: Buffer): { view: SharedView; transfer: ArrayBuffer[] } {
  if (data.buffer instanceof SharedArrayBuffer)
    return {
      view: { buffer: data.buffer, offset: data.byteOffset, length: data.byteLength },
      transfer: [],
    };
  const buf = ownBuffer(data);
  return { view: { buffer: buf, offset: 0, length: buf.byteLength }, transfer: [buf] };
}
