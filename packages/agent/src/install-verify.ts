/**
 * The read-back check of an install, run behind the writes: as soon as every unit of a region of
 * the slot has been written, the region is read back from the slot and fed to the image's SHA-256
 * (main thread) and to the dm-verity leaf hashing (pool workers). Verification then overlaps the
 * download and write instead of following them, and the whole slot is still read back once.
 *
 * Invariant: a region is read only after every byte of it was written (the frontier is the end of
 * the longest prefix of finished units), and `finish` compares both digests with the signed ones
 * only after the last byte was read, so the check covers exactly what the slot holds.
 */
import { createHash } from 'node:crypto';
import { FerryError, VerityHasher, type ManifestImage } from '@ferry/core';
import type { ComputePool } from './compute-pool.ts';
import type { SlotDevice } from './slot-device.ts';

/** Bytes per read-back piece; a multiple of the 4 KiB verity block. */
const PIECE = 4 << 20;
/** Leaf jobs in flight before the oldest is awaited. */
const MAX_LEAF_JOBS = 4;

/** Progress of the read-back: bytes of the image checked so far. */
export type VerifyProgress = (done: number, total: number) => void;

/** What ReadBackVerifier checks, and where. */
export interface ReadBackOptions {
  dev: SlotDevice;
  slotName: string;
  img: ManifestImage;
  /** Bytes of the image in the slot. */
  size: number;
  pool: ComputePool;
  progress: VerifyProgress;
}

/** Reads a slot back behind its writer and checks SHA-256 and the dm-verity root. */
export class ReadBackVerifier {
  readonly #ends = new Map<number, number>();
  readonly #hash = createHash('sha256');
  readonly #verity: VerityHasher;
  readonly #salt: Buffer;
  readonly #leaves: Array<Promise<Buffer>> = [];
  #frontier = 0;
  #pos = 0;
  #pump: Promise<void> | undefined;
  #error: Error | undefined;

  readonly #o: ReadBackOptions;

  constructor(o: ReadBackOptions) {
    this.#o = o;
    this.#salt = Buffer.from(o.img.verity.salt, 'hex');
    this.#verity = new VerityHasher(this.#salt);
  }

  /** Marks [offset, end) as written (or already in place) and reads back what became ready. */
  written(offset: number, end: number): void {
    this.#ends.set(offset, end);
    while (this.#ends.has(this.#frontier)) {
      const next = this.#ends.get(this.#frontier)!;
      this.#ends.delete(this.#frontier);
      this.#frontier = next;
    }
    this.#kick();
  }

  #ready(): number {
    const avail = this.#frontier - this.#pos;
    if (this.#frontier >= this.#o.size) return avail;
    return avail >= PIECE ? PIECE : 0;
  }

  #kick(): void {
    if (this.#pump || this.#error !== undefined || this.#ready() === 0) return;
    this.#pump = this.#drain()
      .catch((e: unknown) => {
        this.#error ??= e instanceof Error ? e : new FerryError('INTERNAL', String(e));
      })
      .finally(() => {
        this.#pump = undefined;
        this.#kick();
      });
  }

  async #drain(): Promise<void> {
    for (let len = this.#ready(); len > 0; len = this.#ready()) {
      const n = Math.min(len, PIECE);
      const data = await this.#o.dev.read(this.#pos, n);
      this.#hash.update(data);
      const l = this.#o.pool.leaves(this.#salt, data); // hands `data` over
      l.catch(() => undefined);
      this.#leaves.push(l);
      while (this.#leaves.length > MAX_LEAF_JOBS)
        this.#verity.addLeafDigests(await this.#leaves.shift()!);
      this.#pos += n;
      this.#o.progress(this.#pos, this.#o.size);
    }
  }

  /** Waits for any read in flight, without checking anything (for error paths). */
  async settle(): Promise<void> {
    while (this.#pump) await this.#pump;
    await Promise.allSettled(this.#leaves);
  }

  /**
   * After the last write: reads what is left, then compares SHA-256 and the verity root with the
   * signed values. Returns the hash tree to store after the image.
   */
  async finish(): Promise<Buffer> {
    if (this.#frontier !== this.#o.size)
      throw new FerryError('INTERNAL', `read-back frontier ${this.#frontier} of ${this.#o.size}`);
    this.#kick();
    await this.settle();
    if (this.#error !== undefined) throw this.#error;
    for (const l of this.#leaves.splice(0)) this.#verity.addLeafDigests(await l);
    const digest = this.#hash.digest('hex');
    if (digest !== this.#o.img.sha256)
      throw new FerryError(
        'INSTALL_VERIFY_FAILED',
        `slot ${this.#o.slotName} reads back as ${digest}, signed ${this.#o.img.sha256}`,
      );
    const v = this.#verity.finish();
    if (v.rootHash !== this.#o.img.verity.rootHash)
      throw new FerryError(
        'INSTALL_VERIFY_FAILED',
        `slot ${this.#o.slotName} has verity root ${v.rootHash}, signed ${this.#o.img.verity.rootHash}`,
      );
    return v.tree;
  }
}
