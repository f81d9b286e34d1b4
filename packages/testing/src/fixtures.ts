/** Deterministic test data and temp dirs shared by the test suites. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** xorshift128+ bytes from a seed: fast, repeatable, incompressible. */
export function pseudoRandomBytes(size: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(size);
  let s0 = BigInt(seed) ^ 0x9e3779b97f4a7c15n;
  let s1 = BigInt(seed) * 0xbf58476d1ce4e5b9n + 1n;
  const mask = (1n << 64n) - 1n;
  for (let i = 0; i < size; i += 8) {
    let x = s0;
    const y = s1;
    s0 = y;
    x = (x ^ (x << 23n)) & mask;
    s1 = x ^ y ^ (x >> 17n) ^ (y >> 26n);
    const v = (s1 + y) & mask;
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(v);
    b.copy(out, i, 0, Math.min(8, size - i));
  }
  return out;
}

/**
 * An image-like buffer: mostly random blocks with some repeated regions (as filesystems repeat
 * content), so chunk deduplication has something to find.
 */
export function imageLikeBytes(size: number, seed: number): Buffer {
  const base = pseudoRandomBytes(size, seed);
  const repeatLen = Math.floor(size / 3);
  base.copy(base, size - repeatLen - 1, 0, repeatLen);
  return base;
}

/** A temp dir removed by the returned cleanup. */
export async function tempDir(
  prefix = 'ferry-test-',
  parent = tmpdir(),
): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(parent, prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}
