/**
 * A reusable zstd decoder that writes straight into the caller's buffer. `zstdDecompressSync`
 * builds a new decoder context and a new output buffer for every call; for an image of
 * compressible chunks that is a context, a buffer and a copy per chunk (2 s of CPU of 6.8 for a
 * 1 GiB image on the dev host), and buffers the worker's collector frees late (peak RSS). This
 * keeps one native context per thread and decodes into the slab the chunk is written from.
 *
 * It drives the native handle behind node:zlib's streams (`_handle.writeSync`, the call Node's
 * own synchronous path makes, with `_writeState` holding what is left of input and output):
 * internal to Node, so `ZstdDecoder.create` returns undefined when the handle does not look
 * as expected, and callers fall back to `zstdDecompressSync`.
 *
 * Invariant: `decode` never writes outside [at, at + size) of `out`, and returns only when the
 * frame decoded to exactly `size` bytes with no error and no byte left over, which leaves the
 * context between frames: the next frame starts clean without a reset (a reset would also drop
 * the window limit). After any failure the context is closed, never reused.
 */
import { constants, createZstdDecompress } from 'node:zlib';
import { FerryError } from './errors.ts';

/**
 * Largest window a frame may ask for: 16 MiB, the largest chunk (`validateChunkerParams`). Any
 * frame of a valid chunk fits; a forged one asking for more is refused instead of making the
 * reused context hold up to 128 MiB (zstd's default limit) for the rest of the install.
 */
const WINDOW_LOG_MAX = 24;

/** One decoding step: input bytes to read and room to write. */
type WriteArgs = [
  input: Uint8Array,
  inOffset: number,
  inLength: number,
  out: Uint8Array,
  outOffset: number,
  outLength: number,
];

interface NativeZstd {
  writeSync(flush: number, ...args: WriteArgs): void;
  close(): void;
  onerror: (message: string, errno: number, code?: string) => void;
}

/** One native zstd decoding context, reused frame after frame. */
export class ZstdDecoder {
  readonly #handle: NativeZstd;
  /** [output bytes left, input bytes left] after each write. */
  readonly #state: Uint32Array;
  readonly #spare = Buffer.alloc(1);
  #error: string | undefined;
  #broken = false;

  private constructor(handle: NativeZstd, state: Uint32Array) {
    this.#handle = handle;
    this.#state = state;
    handle.onerror = (message, _errno, code) => {
      this.#error = `${code ?? 'error'}: ${message}`;
    };
  }

  /** A decoder, or undefined when this Node's zlib internals are not the expected ones. */
  static create(): ZstdDecoder | undefined {
    const stream = createZstdDecompress({
      params: { [constants.ZSTD_d_windowLogMax]: WINDOW_LOG_MAX },
    }) as unknown as {
      _handle?: Partial<NativeZstd>;
      _writeState?: unknown;
    };
    const h = stream._handle;
    const state = stream._writeState;
    if (
      typeof h?.writeSync !== 'function' ||
      typeof h.close !== 'function' ||
      !(state instanceof Uint32Array) ||
      state.length < 2
    )
      return undefined;
    return new ZstdDecoder(h as NativeZstd, state);
  }

  /** True once an error has made this context unusable. */
  get broken(): boolean {
    return this.#broken;
  }

  /**
   * Decodes one whole frame into `out` at `at`: exactly `size` bytes, or CHUNK_CORRUPT (does not
   * decode, decodes past `size`) or CHUNK_HASH_MISMATCH (decodes to fewer bytes). `id` names the
   * chunk in errors.
   */
  decode(id: string, frame: Uint8Array, size: number, out: Uint8Array, at: number): void {
    if (this.#broken) throw new FerryError('INTERNAL', 'zstd decoder used after an error');
    try {
      this.#write(id, frame, 0, frame.length, out, at, size);
      const produced = size - this.#state[0]!;
      const inputLeft = this.#state[1]!;
      // Anything more, input not taken or output still held by the decoder, is past the chunk.
      this.#write(id, frame, frame.length - inputLeft, inputLeft, this.#spare, 0, 1);
      if (this.#state[0] === 0 || this.#state[1] !== 0)
        throw new FerryError('CHUNK_CORRUPT', `chunk ${id} decodes past ${size} bytes`);
      if (produced !== size)
        throw new FerryError(
          'CHUNK_HASH_MISMATCH',
          `chunk ${id} is ${produced} bytes, the index says ${size}`,
        );
    } catch (e) {
      // The context may be inside a frame now: it is never used again.
      this.#broken = true;
      this.#handle.close();
      throw e;
    }
  }

  #write(id: string, ...args: WriteArgs): void {
    this.#error = undefined;
    this.#handle.writeSync(constants.ZSTD_e_end, ...args);
    // Set by onerror during the call, which the compiler cannot see.
    const error = this.#error as string | undefined;
    if (error !== undefined)
      throw new FerryError('CHUNK_CORRUPT', `chunk ${id} does not decompress (${error})`);
  }
}
