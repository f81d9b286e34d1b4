/**
 * Worker threads for the CPU-heavy part of an install: decompressing and verifying chunks, and
 * hashing dm-verity leaves. The main thread keeps the I/O and the order; the workers use the
 * other cores. One worker per core (at least one), each job to the least busy worker.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { FerryError, type ErrorCode } from '@ferry/core';
import {
  ownBuffer,
  type ComputeJob,
  type ComputeReply,
  type DecodeItem,
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

  constructor(size = availableParallelism()) {
    for (let i = 0; i < Math.max(1, size); i++) {
      const w = new Worker(new URL('./compute-worker.ts', import.meta.url));
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

  #run(job: JobBody, transfer: ArrayBuffer[]): Promise<Buffer> {
    const seq = this.#seq++;
    let worker = 0;
    for (let i = 1; i < this.#busy.length; i++)
      if (this.#busy[i]! < this.#busy[worker]!) worker = i;
    this.#busy[worker]!++;
    return new Promise((resolve, reject) => {
      this.#pending.set(seq, { resolve, reject, worker });
      this.#workers[worker]!.postMessage({ ...job, seq }, transfer);
    });
  }

  /**
   * Decompresses and verifies a batch of chunks whose zstd frames lie in `frames` (handed over),
   * returning their bytes back to back.
   */
  decode(frames: Buffer, items: DecodeItem[]): Promise<Buffer> {
    const buf = ownBuffer(frames);
    return this.#run({ op: 'decode', frames: buf, items }, [buf]);
  }

  /** dm-verity level-0 digests of `data` (handed over: do not use it afterwards). */
  leaves(salt: Buffer, data: Buffer): Promise<Buffer> {
    const buf = ownBuffer(data);
    return this.#run({ op: 'leaves', salt: ownBuffer(Buffer.from(salt)), data: buf }, [buf]);
  }

  async close(): Promise<void> {
    await Promise.all(this.#workers.map((w) => w.terminate()));
  }
}
