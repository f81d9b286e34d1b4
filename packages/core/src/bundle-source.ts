/**
 * Random-access byte sources a bundle is read from: a local file, or a URL read with HTTP range
 * requests (so a device can fetch only the chunks it lacks from a bundle on a plain web server).
 */
import { open, type FileHandle } from 'node:fs/promises';
import { FerryError } from './errors.ts';

export interface ByteSource {
  /** A name for messages (path or URL). */
  readonly name: string;
  size(): Promise<number>;
  /**
   * Reads exactly `length` bytes at `offset`; BUNDLE_TRUNCATED if the source ends first. With
   * `into` (at least `length` bytes), the bytes land there and the result is a view of it.
   */
  read(offset: number, length: number, into?: Buffer): Promise<Buffer>;
  close(): Promise<void>;
  /** Bytes read so far (for measuring how much of a bundle a device pulled). */
  readonly bytesRead: number;
}

/** `length` bytes to read into: a view of `into` (a reused buffer), else a new buffer. */
function bufferFor(length: number, into?: Buffer): Buffer {
  if (!into) return Buffer.allocUnsafe(length);
  if (into.length < length)
    throw new FerryError('INTERNAL', `read of ${length} bytes into ${into.length}`);
  return into.subarray(0, length);
}

/** A bundle file on local storage. */
export class FileSource implements ByteSource {
  readonly name: string;
  bytesRead = 0;
  #handle: FileHandle | undefined;

  constructor(path: string) {
    this.name = path;
  }

  async #fh(): Promise<FileHandle> {
    this.#handle ??= await open(this.name, 'r');
    return this.#handle;
  }

  async size(): Promise<number> {
    return (await (await this.#fh()).stat()).size;
  }

  async read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    const buf = bufferFor(length, into);
    const fh = await this.#fh();
    let done = 0;
    while (done < length) {
      const { bytesRead } = await fh.read(buf, done, length - done, offset + done);
      if (bytesRead === 0)
        throw new FerryError(
          'BUNDLE_TRUNCATED',
          `${this.name} ends at ${offset + done}, ${length - done} bytes short`,
        );
      done += bytesRead;
    }
    this.bytesRead += length;
    return buf;
  }

  async close(): Promise<void> {
    await this.#handle?.close();
    this.#handle = undefined;
  }
}

export interface HttpSourceOptions {
  /** Per-request timeout in milliseconds (slow-retrieval guard). Default 30 s. */
  timeoutMs?: number;
  headers?: Record<string, string>;
}

/**
 * A bundle on a web server that honours `Range` (nginx, S3-style buckets, CDNs). Each read is
 * one `Range: bytes=a-b` request; the response must be 206 with the exact length asked for, so a
 * server streaming past the requested range cannot make us read more (endless-data guard).
 */
export class HttpRangeSource implements ByteSource {
  readonly name: string;
  bytesRead = 0;
  requests = 0;
  #size: number | undefined;
  readonly #opts: HttpSourceOptions;

  constructor(url: string, opts: HttpSourceOptions = {}) {
    this.name = url;
    this.#opts = opts;
  }

  async #get(range: string): Promise<Response> {
    this.requests++;
    const res = await fetch(this.name, {
      headers: { ...this.#opts.headers, range },
      signal: AbortSignal.timeout(this.#opts.timeoutMs ?? 30_000),
    }).catch((e: unknown) => {
      throw new FerryError('IO', `fetching ${this.name}: ${(e as Error).message}`, { cause: e });
    });
    if (res.status !== 206) {
      await res.body?.cancel();
      throw new FerryError(
        'IO',
        `${this.name}: expected 206 Partial Content for ${range}, got ${res.status}`,
      );
    }
    return res;
  }

  async size(): Promise<number> {
    if (this.#size === undefined) {
      const res = await this.#get('bytes=0-0');
      await res.body?.cancel();
      const m = /\/(\d+)$/.exec(res.headers.get('content-range') ?? '');
      if (!m?.[1]) throw new FerryError('IO', `${this.name}: no total size in Content-Range`);
      this.#size = Number(m[1]);
    }
    return this.#size;
  }

  async read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    const total = await this.size();
    if (offset + length > total)
      throw new FerryError(
        'BUNDLE_TRUNCATED',
        `${this.name} is ${total} bytes, read to ${offset + length} asked`,
      );
    const res = await this.#get(`bytes=${offset}-${offset + length - 1}`);
    const buf = bufferFor(length, into);
    let done = 0;
    let overrun = false;
    // Leaving the loop early cancels the body: a server streaming past the range is cut off.
    for await (const part of res.body ?? []) {
      const bytes = part as Uint8Array;
      if (done + bytes.length > length) {
        overrun = true;
        break;
      }
      buf.set(bytes, done);
      done += bytes.length;
    }
    if (overrun)
      throw new FerryError(
        'IO',
        `${this.name}: server sent more than the ${length} bytes asked for`,
      );
    if (done !== length)
      throw new FerryError('BUNDLE_TRUNCATED', `${this.name}: got ${done} of ${length} bytes`);
    this.bytesRead += length;
    return buf;
  }

  async close(): Promise<void> {}
}

/** A FileSource for paths, an HttpRangeSource for http(s) URLs. */
export function openSource(pathOrUrl: string, opts?: HttpSourceOptions): ByteSource {
  return /^https?:\/\//.test(pathOrUrl)
    ? new HttpRangeSource(pathOrUrl, opts)
    : new FileSource(pathOrUrl);
}
