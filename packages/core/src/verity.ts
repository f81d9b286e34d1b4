/**
 * dm-verity hash trees, byte for byte what `veritysetup format --format=1 --hash=sha256
 * --data-block-size=4096 --hash-block-size=4096 --no-superblock` writes. Layout, padding rule and
 * the veritysetup command that reproduces a tree: docs/formats/verity.md.
 *
 * @example
 * const salt = deriveVeritySalt(imageSha256);
 * const { rootHash, tree, treeSize, dataBlocks } = await computeVerity('rootfs.squashfs', salt);
 */
import { createHash, hash, randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import { FerryError, withContext } from './errors.ts';

/** Data and hash block size of Ferry's verity format 1. */
export const VERITY_BLOCK_SIZE = 4096;
/** Largest salt veritysetup and the kernel accept. */
export const VERITY_MAX_SALT_BYTES = 256;

const DIGEST_SIZE = 32;
const DIGESTS_PER_BLOCK = VERITY_BLOCK_SIZE / DIGEST_SIZE;
// Level-0 digests grow in 1 MiB slabs, so growing never copies what is already hashed.
const SLAB_DIGESTS = (1024 * 1024) / DIGEST_SIZE;
const READ_SIZE = 4 * 1024 * 1024;
const SHA256_HEX = /^[0-9a-f]{64}$/;

/** The tunable parameter of format 1 (block sizes and hash are fixed: 4096/4096/sha256). */
export interface VerityParams {
  salt: Buffer;
}

/** What a manifest records about an image's hash tree. */
export interface VerityResult {
  /** SHA-256 of the top hash block (or of the only data block), lowercase hex. */
  rootHash: string;
  /** Lowercase hex, 0..256 bytes. */
  salt: string;
  /** Number of 4096-byte data blocks, counting a zero-padded last one. */
  dataBlocks: number;
  /** Bytes of hash tree (a multiple of 4096; 0 for a one-block image). */
  treeSize: number;
}

/**
 * Hash blocks per tree level, lowest level (digests of data blocks) first. As cryptsetup's
 * hash_levels(): a level is added until one hash block covers everything, so a single data block
 * has no level at all and its own digest is the root.
 */
export function verityLevelSizes(dataBlocks: number): number[] {
  const sizes: number[] = [];
  for (let n = dataBlocks; n > 1;) {
    n = Math.ceil(n / DIGESTS_PER_BLOCK);
    sizes.push(n);
  }
  return sizes;
}

/**
 * Streaming dm-verity hasher: feed the image in pieces of any size, then call finish(). Memory is
 * bounded by the tree (32 bytes per data block), not by the image.
 *
 * @example
 * const v = new VerityHasher(salt);
 * for await (const piece of stream) v.update(piece);
 * const { rootHash, tree } = v.finish();
 */
export class VerityHasher {
  readonly #salt: Buffer;
  /** salt || one block: the input of every digest, hashed in one call (the hot path). */
  readonly #scratch: Buffer;
  readonly #slabs: Buffer[] = [];
  #fill = 0;
  #blocks = 0;
  #finished = false;

  constructor(salt: Buffer) {
    if (salt.length > VERITY_MAX_SALT_BYTES)
      throw new FerryError('VERITY_PARAMS_INVALID', `salt has ${salt.length} bytes, at most 256`);
    this.#salt = Buffer.from(salt);
    this.#scratch = Buffer.alloc(salt.length + VERITY_BLOCK_SIZE);
    this.#salt.copy(this.#scratch);
  }

  /** Hashes the next bytes of the image. */
  update(data: Uint8Array): void {
    if (this.#finished) throw new FerryError('INTERNAL', 'VerityHasher.update after finish');
    const block = this.#scratch.subarray(this.#salt.length);
    let off = 0;
    if (this.#fill > 0) {
      off = Math.min(VERITY_BLOCK_SIZE - this.#fill, data.length);
      block.set(data.subarray(0, off), this.#fill);
      this.#fill += off;
      if (this.#fill < VERITY_BLOCK_SIZE) return;
      this.#addDigest(hash('sha256', this.#scratch, 'buffer'));
      this.#fill = 0;
    }
    for (; data.length - off >= VERITY_BLOCK_SIZE; off += VERITY_BLOCK_SIZE) {
      const piece = data.subarray(off, off + VERITY_BLOCK_SIZE);
      if (this.#salt.length === 0) {
        this.#addDigest(hash('sha256', piece, 'buffer'));
      } else {
        block.set(piece);
        this.#addDigest(hash('sha256', this.#scratch, 'buffer'));
      }
    }
    if (off < data.length) {
      block.set(data.subarray(off));
      this.#fill = data.length - off;
    }
  }

  /**
   * Appends level-0 digests computed elsewhere (e.g. by worker threads with `verityLeafDigests`),
   * for the next `digests.length / 32` blocks. Only at a block boundary.
   */
  addLeafDigests(digests: Uint8Array): void {
    if (this.#finished || this.#fill !== 0 || digests.length % DIGEST_SIZE !== 0)
      throw new FerryError(
        'INTERNAL',
        'VerityHasher.addLeafDigests needs whole digests at a block boundary',
      );
    const d = Buffer.from(digests.buffer, digests.byteOffset, digests.byteLength);
    for (let off = 0; off < d.length; off += DIGEST_SIZE)
      this.#addDigest(d.subarray(off, off + DIGEST_SIZE));
  }

  /** Pads the last block with zeros, builds the upper levels and returns the tree. */
  finish(): VerityResult & { tree: Buffer } {
    if (this.#finished) throw new FerryError('INTERNAL', 'VerityHasher.finish called twice');
    this.#finished = true;
    if (this.#fill > 0) {
      this.#scratch.fill(0, this.#salt.length + this.#fill);
      this.#addDigest(hash('sha256', this.#scratch, 'buffer'));
    }
    if (this.#blocks === 0)
      throw new FerryError('VERITY_PARAMS_INVALID', 'an empty image has no dm-verity tree');
    const sizes = verityLevelSizes(this.#blocks);
    const tree = this.#layOut(sizes);
    let root: Buffer;
    if (sizes.length === 0) root = this.#slabs[0]!.subarray(0, DIGEST_SIZE);
    else {
      // Invariant: the top level is one block at offset 0, below it each level in turn.
      let below = tree.length - sizes[0]! * VERITY_BLOCK_SIZE;
      for (let i = 1; i < sizes.length; i++) {
        const at = below - sizes[i]! * VERITY_BLOCK_SIZE;
        this.#hashLevel(tree.subarray(below, below + sizes[i - 1]! * VERITY_BLOCK_SIZE), tree, at);
        below = at;
      }
      root = this.#digest(tree.subarray(0, VERITY_BLOCK_SIZE));
    }
    this.#slabs.length = 0;
    return {
      rootHash: root.toString('hex'),
      salt: this.#salt.toString('hex'),
      dataBlocks: this.#blocks,
      treeSize: tree.length,
      tree,
    };
  }

  #addDigest(d: Buffer): void {
    const slot = this.#blocks % SLAB_DIGESTS;
    if (slot === 0) this.#slabs.push(Buffer.alloc(SLAB_DIGESTS * DIGEST_SIZE));
    d.copy(this.#slabs[this.#slabs.length - 1]!, slot * DIGEST_SIZE);
    this.#blocks++;
  }

  /** A zeroed tree with the level-0 digests copied to its tail. */
  #layOut(sizes: number[]): Buffer {
    const total = sizes.reduce((a, b) => a + b, 0) * VERITY_BLOCK_SIZE;
    const tree = Buffer.alloc(total);
    if (sizes.length === 0) return tree;
    let at = total - sizes[0]! * VERITY_BLOCK_SIZE;
    for (const slab of this.#slabs) {
      at += slab.copy(tree, at, 0, Math.min(slab.length, total - at));
    }
    return tree;
  }

  /** Writes the digests of each block of `level` into `tree` from offset `at`. */
  #hashLevel(level: Buffer, tree: Buffer, at: number): void {
    for (let off = 0; off < level.length; off += VERITY_BLOCK_SIZE) {
      this.#digest(level.subarray(off, off + VERITY_BLOCK_SIZE)).copy(tree, at);
      at += DIGEST_SIZE;
    }
  }

  #digest(block: Buffer): Buffer {
    this.#scratch.set(block, this.#salt.length);
    return hash('sha256', this.#scratch, 'buffer');
  }
}

/**
 * Level-0 digests of `data` (SHA-256 of salt || each 4 KiB block; a short last block is
 * zero-padded, so only the image's final piece may be short). Independent per block, so pieces
 * of one image can be hashed in parallel and joined with `VerityHasher.addLeafDigests`.
 */
export function verityLeafDigests(salt: Buffer, data: Uint8Array): Buffer {
  const blocks = Math.ceil(data.length / VERITY_BLOCK_SIZE);
  const out = Buffer.allocUnsafe(blocks * DIGEST_SIZE);
  const scratch = Buffer.alloc(salt.length + VERITY_BLOCK_SIZE);
  salt.copy(scratch);
  const block = scratch.subarray(salt.length);
  for (let i = 0; i < blocks; i++) {
    const piece = data.subarray(i * VERITY_BLOCK_SIZE, (i + 1) * VERITY_BLOCK_SIZE);
    if (piece.length < VERITY_BLOCK_SIZE) block.fill(0);
    block.set(piece);
    hash('sha256', scratch, 'buffer').copy(out, i * DIGEST_SIZE);
  }
  return out;
}

/**
 * The dm-verity tree of a file, read in large pieces (the next read overlaps hashing).
 *
 * @example
 * const v = await computeVerity('/tmp/rootfs.erofs', randomVeritySalt());
 * await writeFile('/tmp/rootfs.verity', v.tree);
 */
export async function computeVerity(
  path: string,
  salt: Buffer,
): Promise<VerityResult & { tree: Buffer }> {
  const hasher = new VerityHasher(salt);
  try {
    const fh = await open(path, 'r');
    try {
      const bufs = [Buffer.allocUnsafe(READ_SIZE), Buffer.allocUnsafe(READ_SIZE)];
      let turn = 0;
      let pending = fh.read(bufs[0]!, 0, READ_SIZE, null);
      for (;;) {
        const { bytesRead, buffer } = await pending;
        if (bytesRead === 0) break;
        turn ^= 1;
        pending = fh.read(bufs[turn]!, 0, READ_SIZE, null);
        hasher.update(buffer.subarray(0, bytesRead));
      }
    } finally {
      await fh.close();
    }
    return hasher.finish();
  } catch (e) {
    throw withContext(`computing dm-verity of ${path}`, e);
  }
}

/** A fresh random 32-byte salt. */
export function randomVeritySalt(): Buffer {
  return randomBytes(32);
}

/**
 * Deterministic salt for reproducible bundles: SHA-256("ferry-verity-salt\0" + imageSha256Hex),
 * all 32 bytes. The image digest must be 64 lowercase hex digits.
 */
export function deriveVeritySalt(imageSha256Hex: string): Buffer {
  if (!SHA256_HEX.test(imageSha256Hex))
    throw new FerryError('VERITY_PARAMS_INVALID', 'image digest is not 64 lowercase hex digits');
  return createHash('sha256').update(`ferry-verity-salt\0${imageSha256Hex}`).digest();
}
