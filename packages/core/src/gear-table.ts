/**
 * The gear table of Ferry's content-defined chunker. Chunk boundaries are part of the chunk index
 * format, so this table must never change: a device and a build host must cut the same bytes at
 * the same places forever. It is derived, not pasted, so any implementation can rebuild it:
 *
 *   GEAR[i] = first 4 bytes, read little-endian, of SHA-256(ASCII "ferry-gear-v1:" || byte i)
 *
 * (docs/formats/chunk-index.md). chunker.test.ts pins a digest of the table.
 */
import { createHash } from 'node:crypto';

/** The seed string the gear table is derived from (format constant). */
export const GEAR_SEED = 'ferry-gear-v1:';

function deriveGearTable(): Uint32Array {
  const table = new Uint32Array(256);
  const seed = Buffer.from(GEAR_SEED, 'ascii');
  for (let i = 0; i < 256; i++) {
    const digest = createHash('sha256').update(seed).update(Uint8Array.of(i)).digest();
    table[i] = digest.readUInt32LE(0);
  }
  return table;
}

/**
 * The 256 32-bit gear values, indexed by byte value.
 *
 * @example
 * h = ((h << 1) + GEAR[byte]) >>> 0;
 */
export const GEAR: Uint32Array = deriveGearTable();

/**
 * The same table viewed as signed 32-bit integers. The hot loop reads this view so that V8 keeps
 * every value a small integer; the bits are identical to GEAR.
 */
export const GEAR_I32: Int32Array = new Int32Array(GEAR.buffer, GEAR.byteOffset, 256);
