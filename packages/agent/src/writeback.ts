/**
 * Writeback behind an install's writes. Every `step` bytes written, the slot is flushed
 * (fdatasync) while the writes go on, so the storage works through the whole install instead of
 * only at the final fsync, and the dirty page cache an install holds stays bounded: a writer more
 * than `ahead` bytes past the flush in flight waits for it. Without this, a machine with plenty of
 * RAM keeps the whole image dirty (the kernel starts writing back at 10% of memory) and a slow
 * card then spends the whole write at the end; a device with little RAM stalls in the kernel's
 * dirty throttling instead, at moments nobody chose.
 *
 * Invariant: a failed flush fails the install (the next `wrote` or `drain` throws), and `drain`
 * returns only once no flush is in flight, so the final fsync starts from a settled slot.
 */
import { FerryError } from '@ferry/core';

/** Bytes written between flushes. */
export const WRITEBACK_STEP = 32 << 20;

export interface WritebackOptions {
  /** Flushes the slot's written bytes to its storage (fdatasync). */
  sync: () => Promise<void>;
  /** Names the slot in errors. */
  slotName: string;
  /** Bytes written between flushes (default `WRITEBACK_STEP`). */
  step?: number;
  /** Bytes written past the flush in flight before writers wait for it (default 4 steps). */
  ahead?: number;
}

/** Schedules flushes behind a stream of writes; see the module comment. */
export class Writeback {
  readonly #o: WritebackOptions;
  readonly #step: number;
  readonly #ahead: number;
  /** Bytes written since the last flush started. */
  #dirty = 0;
  #flush: Promise<void> | undefined;
  #error: FerryError | undefined;
  /** Flushes started so far. */
  flushes = 0;

  constructor(o: WritebackOptions) {
    this.#o = o;
    this.#step = o.step ?? WRITEBACK_STEP;
    this.#ahead = o.ahead ?? 4 * this.#step;
  }

  /** Counts `bytes` just written; starts a flush, or waits for one when too far ahead. */
  async wrote(bytes: number): Promise<void> {
    this.#dirty += bytes;
    while (this.#flush && this.#dirty >= this.#ahead) await this.#flush;
    this.#check();
    if (!this.#flush && this.#dirty >= this.#step) this.#start();
  }

  /** Waits for the flush in flight, if any; throws if any flush failed. */
  async drain(): Promise<void> {
    while (this.#flush) await this.#flush;
    this.#check();
  }

  #start(): void {
    this.#dirty = 0;
    this.flushes++;
    this.#flush = this.#o
      .sync()
      .catch((e: unknown) => {
        this.#error ??= new FerryError(
          'IO',
          `slot ${this.#o.slotName}: flushing written bytes: ${(e as Error)?.message ?? e}`,
          { cause: e },
        );
      })
      .finally(() => {
        this.#flush = undefined;
      });
  }

  #check(): void {
    if (this.#error) throw this.#error;
  }
}
