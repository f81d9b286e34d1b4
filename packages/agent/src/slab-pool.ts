/**
 * Reused shared buffers ("slabs") for the write path of an install. A bundle run's frames are
 * read into one slab and decoded by a pool worker into another, both read and written in place
 * (SharedArrayBuffer), then the decoded slab is written to the slot. Nothing is allocated,
 * transferred or collected per run: fresh buffers of this size cost the kernel a mapping, a page
 * fault and zeroing per 4 KiB, and the collector a pass, for every megabyte installed.
 */

/** A fixed set of equal shared buffers; `take` never waits (callers fall back to a new buffer). */
export class SlabPool {
  /** Bytes of each slab. */
  readonly size: number;
  readonly #free: Buffer[] = [];

  constructor(count: number, size: number) {
    this.size = size;
    for (let i = 0; i < count; i++) this.#free.push(Buffer.from(new SharedArrayBuffer(size)));
  }

  /** A free slab able to hold `bytes`, or undefined when none is free or it is too small. */
  take(bytes: number): Buffer | undefined {
    return bytes <= this.size ? this.#free.pop() : undefined;
  }

  /** Returns a slab once nothing reads or writes it any more. */
  give(slab: Buffer | undefined): void {
    if (slab) this.#free.push(Buffer.from(slab.buffer, 0, this.size));
  }
}
