/**
 * Where an install's chunks come from. Installing is the same for every source: a signed,
 * verified manifest, the chunk indexes it signs, and a way to fetch the compressed frames of
 * the chunks the device lacks. A bundle (file or URL) serves runs of adjacent frames with one
 * read each; a repository serves one file per chunk from its shared chunk store, fetched over
 * parallel keep-alive connections. Either way every frame is decompressed and checked against
 * its id before a byte of it is written (install.ts).
 */
import { createHash } from 'node:crypto';
import {
  canonicalBytes,
  readBundleFrame,
  type ChunkIndex,
  type Manifest,
  type OpenedBundle,
} from '@ferry/core';
import type { DecodeItem } from './compute-worker.ts';
import type { HttpFetcher } from './http-fetch.ts';

/** A chunk as an index lists it. */
export interface ChunkRef {
  id: string;
  size: number;
}

/** Frames of some chunks fetched with one request: decoded together, written together. */
export interface FetchUnit {
  /** Uncompressed bytes the unit yields. */
  size: number;
  /**
   * The frames, and where each chunk's frame lies in them. A source may read them into `into`
   * (a reused buffer) when they fit, and then returns a view of it.
   */
  fetch(into?: Buffer): Promise<{ frames: Buffer; items: DecodeItem[] }>;
}

/** A release ready to install: verified manifest, its chunk indexes, and its chunks. */
export interface ReleaseSource {
  /** Path or URL, for messages. */
  readonly name: string;
  /** True when chunks travel over the network (the install then reuses what a slot holds). */
  readonly remote: boolean;
  readonly manifest: Manifest;
  /** SHA-256 of the canonical manifest: the release's identity in state and reports. */
  readonly manifestSha256: string;
  readonly indexes: Map<string, ChunkIndex>;
  /** Compressed bytes fetched from the source so far. */
  readonly bytesRead: number;
  /** How many units an install keeps in flight. */
  readonly concurrency: number;
  /** Units covering `chunks` (adjacent in the image), in order. */
  units(chunks: ChunkRef[]): FetchUnit[];
  /** One chunk's frame (used when a seed turns out corrupt). */
  frame(id: string, size: number): Promise<Buffer>;
  /**
   * Bytes `start..end` (inclusive; fewer at its end) of the delta pack from the image with chunk
   * index `base` to the one with `target`, when the source serves packs (delta-install.ts).
   */
  packRange?(base: string, target: string, start: number, end: number): Promise<Buffer>;
  /** Ranged requests a pack read keeps in flight. */
  readonly packParallel?: number;
  close(): Promise<void>;
}

/** SHA-256 of a manifest's canonical bytes. */
export function manifestDigest(m: Manifest): string {
  return createHash('sha256').update(canonicalBytes(m)).digest('hex');
}

/**
 * Runs of adjacent bundle frames are read with one request, up to this many frame bytes and this
 * many bytes of chunks (so that both sides of a run fit the install's reused buffers).
 */
export const RUN_BYTES = 2 << 20;

/** A release read from an opened (signature-verified) bundle. */
export class BundleRelease implements ReleaseSource {
  readonly remote: boolean;
  readonly manifest: Manifest;
  readonly manifestSha256: string;
  readonly indexes: Map<string, ChunkIndex>;
  readonly concurrency = 6;
  readonly #b: OpenedBundle;

  constructor(bundle: OpenedBundle) {
    this.#b = bundle;
    this.remote = /^https?:\/\//.test(bundle.source.name);
    this.manifest = bundle.manifest;
    this.manifestSha256 = manifestDigest(bundle.manifest);
    this.indexes = new Map([...bundle.images].map(([n, img]) => [n, img.index]));
  }

  get name(): string {
    return this.#b.source.name;
  }

  get bytesRead(): number {
    return this.#b.source.bytesRead;
  }

  units(chunks: ChunkRef[]): FetchUnit[] {
    const b = this.#b;
    const runs: Array<{ offset: number; length: number; size: number; items: DecodeItem[] }> = [];
    let run: (typeof runs)[number] | undefined;
    for (const c of chunks) {
      const e = b.payload.get(c.id)!;
      if (
        run &&
        e.offset === run.offset + run.length &&
        run.length + e.length <= RUN_BYTES &&
        run.size + c.size <= RUN_BYTES
      ) {
        run.items.push({ id: c.id, offset: run.length, length: e.length, size: c.size });
        run.length += e.length;
        run.size += c.size;
      } else {
        run = { offset: e.offset, length: e.length, size: c.size, items: [] };
        run.items.push({ id: c.id, offset: 0, length: e.length, size: c.size });
        runs.push(run);
      }
    }
    return runs.map((r) => ({
      size: r.size,
      fetch: async (into?: Buffer) => ({
        frames: await b.source.read(
          b.header.payloadOffset + r.offset,
          r.length,
          into && into.length >= r.length ? into : undefined,
        ),
        items: r.items,
      }),
    }));
  }

  frame(id: string): Promise<Buffer> {
    return readBundleFrame(this.#b, id);
  }

  async close(): Promise<void> {
    await this.#b.source.close();
  }
}

/** Upper bound of a zstd frame holding `size` bytes (as the chunk store computes it). */
export function frameBound(size: number): number {
  return size + (size >>> 8) + 1024;
}

/**
 * A release in a repository: manifest and indexes already fetched through TUF and verified;
 * chunks from `<base>/chunks/ab/cdef....zst`, one request each (a re-run after an interruption
 * fetches again at most the chunks that were in flight); delta packs from
 * `<base>/deltas/<base index>/<target index>.fdp` in ranges, with the same fetcher and limits.
 */
export class RepoRelease implements ReleaseSource {
  readonly remote = true;
  readonly name: string;
  readonly manifest: Manifest;
  readonly manifestSha256: string;
  readonly indexes: Map<string, ChunkIndex>;
  readonly concurrency: number;
  readonly packParallel: number;
  readonly #base: string;
  readonly #fetcher: HttpFetcher;

  constructor(o: {
    name: string;
    base: string;
    manifest: Manifest;
    indexes: Map<string, ChunkIndex>;
    fetcher: HttpFetcher;
    parallel: number;
  }) {
    this.name = o.name;
    this.#base = o.base.replace(/\/+$/, '');
    this.manifest = o.manifest;
    this.manifestSha256 = manifestDigest(o.manifest);
    this.indexes = o.indexes;
    this.#fetcher = o.fetcher;
    this.concurrency = o.parallel * 2;
    this.packParallel = o.parallel;
  }

  get bytesRead(): number {
    return this.#fetcher.bytes;
  }

  /** The URL of chunk `id` (ids come from a verified index: 64 hex digits). */
  chunkUrl(id: string): string {
    return `${this.#base}/chunks/${id.slice(0, 2)}/${id.slice(2)}.zst`;
  }

  units(chunks: ChunkRef[]): FetchUnit[] {
    return chunks.map((c) => {
      return {
        size: c.size,
        fetch: async () => {
          const frames = await this.frame(c.id, c.size);
          return { frames, items: [{ id: c.id, offset: 0, length: frames.length, size: c.size }] };
        },
      };
    });
  }

  frame(id: string, size: number): Promise<Buffer> {
    return this.#fetcher.get(this.chunkUrl(id), { maxBytes: frameBound(size) });
  }

  /** The URL of a delta pack (both digests come from signed data: 64 hex digits). */
  packUrl(base: string, target: string): string {
    return `${this.#base}/deltas/${base}/${target}.fdp`;
  }

  packRange(base: string, target: string, start: number, end: number): Promise<Buffer> {
    return this.#fetcher.get(this.packUrl(base, target), {
      maxBytes: end - start + 1,
      range: [start, end],
    });
  }

  close(): Promise<void> {
    this.#fetcher.close();
    return Promise.resolve();
  }
}
