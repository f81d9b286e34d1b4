/**
 * The read-back check of an install, run behind the writes: as soon as every unit of a region of
 * the slot has been written, the region is read back from the slot into a shared buffer, and two
 * pool workers hash it in place at once: one feeds the image's running SHA-256, the other the
 * dm-verity leaves. Verification then overlaps the download and write instead of following them,
 * the whole slot is still read back once, and the main thread only reads.
 *
 * Invariant: a region is read only after every byte of it was written (the frontier is the end of
 * the longest prefix of finished units), and `finish` compares both digests with the signed ones
 * only after the last byte was read, so the check covers exactly what the slot holds.
 */
import { FerryError, VerityHasher, type ManifestImage } from '@ferry/core';
import type { ComputePool } from './compute-pool.ts';
import type { SlotDevice } from './slot-device.ts';

/** Bytes per read-back piece; a multiple of the 4 KiB verity block. */
const PIECE = 4 << 20;
/** Pieces in flight (read, being hashed) before the oldest is awaited: the shared buffers. */
const IN_FLIGHT = 4;

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

/** A piece of the slot being hashed: its shared buffer, its leaves, and both hash jobs. */
interface Piece {
  buf: Buffer;
  leaves: Promise<Buffer>;
  /** Both jobs (SHA-256 and leaves) settled: only then may the buffer be reused. */
  settled: Promise<Array<PromiseSettledResult<unknown>>>;
}

/** Reads a slot back behind its writer and checks SHA-256 and the dm-verity root. */
export class ReadBackVerifier {
  readonly #ends = new Map<number, number>();
  readonly #hash: ReturnType<ComputePool['digest']>;
  readonly #verity: VerityHasher;
  readonly #salt: Buffer;
  /** Pieces in image order; the oldest is retired first, so leaves join the tree in order. */
  readonly #pieces: Piece[] = [];
  readonly #free: Buffer[] = [];
  #frontier = 0;
  #pos = 0;
  #pump: Promise<void> | undefined;
  #error: Error | undefined;

  readonly #o: ReadBackOptions;

  constructor(o: ReadBackOptions) {
    this.#o = o;
    this.#salt = Buffer.from(o.img.verity.salt, 'hex');
    this.#verity = new VerityHasher(this.#salt);
    this.#hash = o.pool.digest();
    for (let i = 0; i < IN_FLIGHT; i++) this.#free.push(Buffer.from(new SharedArrayBuffer(PIECE)));
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
      while (this.#free.length === 0) await this.#retire();
      const buf = this.#free.pop()!.subarray(0, n);
      await this.#o.dev.readInto(this.#pos, buf);
      const leaves = this.#o.pool.leaves(this.#salt, buf);
      const settled = Promise.allSettled([this.#hash.update(buf), leaves]);
      this.#pieces.push({ buf, leaves, settled });
      this.#pos += n;
      this.#o.progress(this.#pos, this.#o.size);
    }
  }

  /** Waits for the oldest piece, adds its leaves to the tree and frees its buffer. */
  async #retire(): Promise<void> {
    const p = this.#pieces.shift()!;
    const results = await p.settled;
    // Only now that both jobs settled is the buffer free: the workers read it in place.
    this.#free.push(Buffer.from(p.buf.buffer));
    for (const r of results) if (r.status === 'rejected') throw r.reason;
    this.#verity.addLeafDigests(await p.leaves);
  }

  /** Waits for any read in flight, without checking anything (for error paths). */
  async settle(): Promise<void> {
    while (this.#pump) await this.#pump;
    await Promise.all(this.#pieces.map((p) => p.settled));
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
    while (this.#pieces.length) await this.#retire();
    const digest = (await this.#hash.end()).toString('hex');
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
