/**
 * A deployment tree from an update repository over HTTP: `trees/<digest>.tree.zst` (the
 * listing, zstd) and `objects/<2 hex>/<62 hex>.zst` (each object's content, zstd; metadata
 * comes from the listing). Every response is byte-capped from signed sizes before it is
 * decompressed, and decompression is capped at the signed size too; the caller checks the
 * listing's digest and the store checks each object's id. Objects are fetched ahead, several
 * at once, over the fetcher's keep-alive connections.
 */
import { Readable } from 'node:stream';
import { zstdDecompressSync } from 'node:zlib';
import { FerryError, treeDigest, type TreeEntry } from '@ferry/core';
import type { HttpFetcher } from './http-fetch.ts';
import type { ObjectSource } from './deploy-objects.ts';
import { frameBound } from './release-source.ts';
import type { SignedTree, TreeSource } from './deploy-source.ts';

/** Options of {@link HttpTreeSource}. */
export interface HttpTreeSourceOptions {
  /** Objects fetched at once (default 4: [update] parallel). */
  parallel?: number;
  /** Compressed bytes fetched ahead of the store at most (default 64 MiB; one object always). */
  aheadBytes?: number;
  /**
   * A listing the device holds (the default deployment's): the listing is first asked for as
   * `trees/<to>.from-<base>.zst`, zstd with this one as dictionary, and in full only when that
   * is missing or does not decompress to the signed digest.
   */
  baseListing?: { sha256: string; bytes: Buffer };
}

const HEX64 = /^[0-9a-f]{64}$/;

/** zstd-decompresses at most `size` bytes; anything else is `code`. */
function unzstd(
  frame: Buffer,
  size: number,
  code: 'DEPLOY_TREE_MISMATCH' | 'DEPLOY_OBJECT_MISMATCH',
  what: string,
): Buffer {
  try {
    // Attack stopped: a small frame that inflates without bound (a zstd bomb).
    return zstdDecompressSync(frame, { maxOutputLength: Math.max(size, 1) });
  } catch (e) {
    throw new FerryError(code, `${what} does not decompress to ${size} bytes`, { cause: e });
  }
}

/**
 * @example
 * const fetcher = new HttpFetcher({ parallel: 4, timeoutMs: 60_000, minRate: 1024, bandwidth: 0 });
 * const source = new HttpTreeSource('https://updates.example.com/repo', fetcher);
 * await deployRelease({ store, manifest, image: 'rootfs', source, ... });
 */
export class HttpTreeSource implements TreeSource {
  readonly base: string;
  readonly #fetcher: HttpFetcher;
  readonly #parallel: number;
  readonly #aheadBytes: number;
  readonly #baseListing: { sha256: string; bytes: Buffer } | undefined;
  /** How the last listing came: as a delta from the base listing, or whole. */
  listingVia: 'delta' | 'full' | undefined;
  /** Objects announced by willOpen, not yet started. */
  #queue: [string, TreeEntry][] = [];
  readonly #inflight = new Map<string, { size: number; frame: Promise<Buffer> }>();
  #aheadNow = 0;
  readonly objects: ObjectSource = { open: (id, entry) => this.#open(id, entry) };

  constructor(baseUrl: string, fetcher: HttpFetcher, opts: HttpTreeSourceOptions = {}) {
    this.base = baseUrl.replace(/\/+$/, '');
    this.#fetcher = fetcher;
    this.#parallel = opts.parallel ?? 4;
    this.#aheadBytes = opts.aheadBytes ?? 64 << 20;
    this.#baseListing = opts.baseListing;
  }

  /** The URL of an object (the id comes from a signed listing: 64 hex digits). */
  objectUrl(id: string): string {
    return `${this.base}/objects/${id.slice(0, 2)}/${id.slice(2)}.zst`;
  }

  async listing(tree: SignedTree): Promise<Buffer> {
    if (!HEX64.test(tree.sha256)) throw new FerryError('INTERNAL', 'tree digest is not hex');
    const delta = await this.#listingDelta(tree);
    this.listingVia = delta ? 'delta' : 'full';
    if (delta) return delta;
    const frame = await this.#fetcher.get(`${this.base}/trees/${tree.sha256}.tree.zst`, {
      maxBytes: frameBound(tree.size),
    });
    return unzstd(frame, tree.size, 'DEPLOY_TREE_MISMATCH', `listing ${tree.sha256}`);
  }

  /** The listing from a delta against the base listing, or undefined to fetch it whole. */
  async #listingDelta(tree: SignedTree): Promise<Buffer | undefined> {
    const b = this.#baseListing;
    if (!b || !HEX64.test(b.sha256) || b.sha256 === tree.sha256) return undefined;
    const url = `${this.base}/trees/${tree.sha256}.from-${b.sha256}.zst`;
    try {
      const frame = await this.#fetcher.get(url, { maxBytes: frameBound(tree.size) });
      const bytes = zstdDecompressSync(frame, {
        dictionary: b.bytes,
        maxOutputLength: Math.max(tree.size, 1),
      });
      // Anything but the signed listing (a stale or foreign delta): fetch it whole instead.
      return treeDigest(bytes) === tree.sha256 ? bytes : undefined;
    } catch {
      return undefined; // no delta for this pair (404), or a bad one: the whole listing
    }
  }

  willOpen(objects: [string, TreeEntry][]): void {
    this.#queue = [...objects];
    this.#fill();
  }

  close(): void {
    this.#fetcher.close();
  }

  /** Starts fetches until `parallel` run or the read-ahead budget is spent. */
  #fill(): void {
    while (this.#queue.length > 0 && this.#inflight.size < this.#parallel) {
      const [id, e] = this.#queue[0]!;
      const size = frameBound(e.size!);
      if (this.#inflight.size > 0 && this.#aheadNow + size > this.#aheadBytes) return;
      this.#queue.shift();
      this.#start(id, size);
    }
  }

  #start(id: string, size: number): void {
    const frame = this.#fetcher.get(this.objectUrl(id), { maxBytes: size });
    // A fetch nobody awaits yet must not be an unhandled rejection; #open sees the error.
    frame.catch(() => {});
    this.#inflight.set(id, { size, frame });
    this.#aheadNow += size;
  }

  async #open(id: string, e: TreeEntry): Promise<Readable> {
    if (!HEX64.test(id)) throw new FerryError('INTERNAL', 'object id is not hex');
    if (!this.#inflight.has(id)) {
      this.#queue = this.#queue.filter(([q]) => q !== id);
      this.#start(id, frameBound(e.size!));
    }
    const got = this.#inflight.get(id)!;
    try {
      const frame = await got.frame;
      return Readable.from([unzstd(frame, e.size!, 'DEPLOY_OBJECT_MISMATCH', `object ${id}`)]);
    } finally {
      this.#inflight.delete(id);
      this.#aheadNow -= got.size;
      this.#fill();
    }
  }
}
