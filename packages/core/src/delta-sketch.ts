/**
 * Similarity sketches of chunks and an index that finds, for a chunk a device lacks, the most
 * similar chunk it holds (the base for a similarity delta, docs/formats/delta.md).
 *
 * A sketch is the set of content-defined anchors of a chunk: the 32-bit gear hash (which depends
 * on exactly the last 32 bytes) wherever its top `bits` bits are zero, i.e. every 2^bits bytes on
 * average. Two chunks that share runs of bytes share the anchors inside them, wherever the runs
 * sit, so anchor votes rank candidates by shared content, not by position.
 */
import { GEAR_I32 } from './gear-table.ts';
import { FerryError } from './errors.ts';

/** Sketch parameters: one anchor every 2^bits bytes on average. */
export const DEFAULT_SKETCH_BITS = 8;

/**
 * The sorted, distinct anchors of `data`.
 *
 * @example
 * const s = chunkSketch(chunk.data); // about size / 256 anchors
 */
export function chunkSketch(data: Uint8Array, bits = DEFAULT_SKETCH_BITS): Uint32Array {
  if (!Number.isInteger(bits) || bits < 4 || bits > 16)
    throw new FerryError('USAGE', `sketch bits must be an integer in 4..16, got ${bits}`);
  const mask = (0xffffffff << (32 - bits)) | 0;
  const out: number[] = [];
  let h = 0;
  for (let i = 0; i < data.length; i++) {
    h = ((h << 1) + GEAR_I32[data[i]!]!) | 0;
    // Only anchors with a full 32-byte window: earlier h values hash fewer bytes.
    if ((h & mask) === 0 && i >= 31) out.push(h >>> 0);
  }
  const sorted = Uint32Array.from(out).sort();
  let n = 0;
  for (let i = 0; i < sorted.length; i++)
    if (i === 0 || sorted[i] !== sorted[n - 1]) sorted[n++] = sorted[i]!;
  return sorted.subarray(0, n);
}

/** A candidate base for a target chunk: its key and how many anchors it shares. */
export interface SimilarMatch<K> {
  key: K;
  shared: number;
}

/**
 * Maps anchors to the base chunks holding them. Anchors held by more than `maxPostings` chunks
 * (runs of zeros, common padding) carry no signal and are ignored, which also bounds the work
 * per query.
 *
 * @example
 * const idx = new SimilarityIndex<string>();
 * for (const c of baseChunks) idx.add(c.id, chunkSketch(c.data));
 * const best = idx.mostSimilar(chunkSketch(target)); // { key, shared } or undefined
 */
export class SimilarityIndex<K> {
  readonly #postings = new Map<number, K[]>();
  readonly #maxPostings: number;

  constructor(opts: { maxPostings?: number } = {}) {
    this.#maxPostings = opts.maxPostings ?? 16;
  }

  /** Adds a base chunk under `key` (call once per distinct chunk). */
  add(key: K, sketch: Uint32Array): void {
    for (const a of sketch) {
      const list = this.#postings.get(a);
      if (!list) this.#postings.set(a, [key]);
      else if (list.length <= this.#maxPostings) list.push(key);
    }
  }

  /**
   * The base chunk sharing the most anchors with `sketch`, if it shares at least `minShared`
   * (default 2) and at least `minFraction` of the sketch (default 0.02). Ties go to the key added
   * first, so the choice is deterministic.
   */
  mostSimilar(sketch: Uint32Array, minShared = 2, minFraction = 0.02): SimilarMatch<K> | undefined {
    const votes = new Map<K, number>();
    for (const a of sketch) {
      const list = this.#postings.get(a);
      if (!list || list.length > this.#maxPostings) continue;
      for (const k of list) votes.set(k, (votes.get(k) ?? 0) + 1);
    }
    let best: SimilarMatch<K> | undefined;
    for (const [key, shared] of votes) if (!best || shared > best.shared) best = { key, shared };
    if (!best || best.shared < minShared || best.shared < minFraction * sketch.length)
      return undefined;
    return best;
  }
}
