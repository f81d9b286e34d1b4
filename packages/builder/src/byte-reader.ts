/**
 * Exact-length reads over a stream of chunks, with the absolute position tracked, for parsers
 * of block formats (tar) that must never buffer more than one block plus one chunk.
 */

/** Pulls exact byte counts from an async stream of buffers. */
export class ByteReader {
  #it: AsyncIterator<Buffer>;
  #buf: Buffer = Buffer.alloc(0);
  #done = false;
  /** Bytes handed out (or skipped) so far. */
  position = 0;

  constructor(source: AsyncIterable<Buffer> | Iterable<Buffer>) {
    const async = (async function* () {
      yield* source;
    })();
    this.#it = Symbol.asyncIterator in source ? source[Symbol.asyncIterator]() : async;
  }

  async #fill(): Promise<boolean> {
    if (this.#done) return false;
    const r = await this.#it.next();
    if (r.done) {
      this.#done = true;
      return false;
    }
    const chunk = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    return true;
  }

  /** Exactly `n` bytes; null at a clean end of stream; throws RangeError if it ends midway. */
  async readExact(n: number): Promise<Buffer | null> {
    while (this.#buf.length < n) {
      if (!(await this.#fill())) {
        if (this.#buf.length === 0) return null;
        throw new RangeError(`stream ends ${this.#buf.length} bytes into a ${n}-byte read`);
      }
    }
    const out = this.#buf.subarray(0, n);
    this.#buf = this.#buf.subarray(n);
    this.position += n;
    return out;
  }

  /** Yields the next `n` bytes in pieces; throws RangeError if the stream ends first. */
  async *take(n: number): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      if (this.#buf.length === 0 && !(await this.#fill()))
        throw new RangeError(`stream ends ${left} bytes short`);
      const piece = this.#buf.subarray(0, Math.min(left, this.#buf.length));
      this.#buf = this.#buf.subarray(piece.length);
      this.position += piece.length;
      left -= piece.length;
      yield piece;
    }
  }

  /** Discards the next `n` bytes. */
  async skip(n: number): Promise<void> {
    for await (const _ of this.take(n));
  }
}
