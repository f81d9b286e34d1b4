/**
 * A slot's bytes: a region [offset, offset + size) of a block device or image file. Every read
 * and write is bounds-checked against the region, so a bug can never spill into a neighbour
 * (the booted slot may sit on the same disk).
 */
import { open, readFile, stat, type FileHandle } from 'node:fs/promises';
import { FerryError } from '@ferry/core';
import type { SlotConfig } from './config.ts';

/** Size of a regular file, or of a block device via /sys (512-byte sectors). */
export async function deviceSize(path: string): Promise<number> {
  let st;
  try {
    st = await stat(path);
  } catch (e) {
    throw new FerryError('INSTALL_SLOT_MISSING', `slot device ${path} does not exist`, {
      cause: e,
    });
  }
  if (st.isFile()) return st.size;
  if (st.isBlockDevice()) {
    const major = Math.floor(st.rdev / 256) & 0xfff;
    const minor = (st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00);
    const sectors = await readFile(`/sys/dev/block/${major}:${minor}/size`, 'utf8');
    return Number(sectors.trim()) * 512;
  }
  throw new FerryError(
    'INSTALL_SLOT_MISSING',
    `slot device ${path} is neither a block device nor a file`,
  );
}

/** Usable bytes of a slot: its configured size, or the device size past its offset. */
export async function slotSize(slot: SlotConfig): Promise<number> {
  if (slot.size !== undefined) return slot.size;
  return Math.max(0, (await deviceSize(slot.device)) - slot.offset);
}

export class SlotDevice {
  readonly slot: SlotConfig;
  readonly size: number;
  readonly #fh: FileHandle;

  private constructor(slot: SlotConfig, size: number, fh: FileHandle) {
    this.slot = slot;
    this.size = size;
    this.#fh = fh;
  }

  static async open(slot: SlotConfig, mode: 'r' | 'r+'): Promise<SlotDevice> {
    const size = await slotSize(slot);
    const fh = await open(slot.device, mode).catch((e: unknown) => {
      throw new FerryError(
        'INSTALL_SLOT_MISSING',
        `opening slot ${slot.name} (${slot.device}): ${(e as Error).message}`,
        { cause: e },
      );
    });
    return new SlotDevice(slot, size, fh);
  }

  #bounds(pos: number, len: number): void {
    if (pos < 0 || len < 0 || pos + len > this.size)
      throw new FerryError(
        'INTERNAL',
        `slot ${this.slot.name}: access [${pos}, ${pos + len}) outside its ${this.size} bytes`,
      );
  }

  async read(pos: number, len: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(len);
    await this.readInto(pos, buf);
    return buf;
  }

  /** Fills `buf` with the slot's bytes from `pos` (a reused or shared buffer: no allocation). */
  async readInto(pos: number, buf: Uint8Array): Promise<void> {
    const len = buf.length;
    this.#bounds(pos, len);
    let done = 0;
    while (done < len) {
      const { bytesRead } = await this.#fh.read(
        buf,
        done,
        len - done,
        this.slot.offset + pos + done,
      );
      if (bytesRead === 0)
        throw new FerryError('IO', `slot ${this.slot.name}: short read at ${pos + done}`);
      done += bytesRead;
    }
  }

  async write(pos: number, data: Uint8Array): Promise<void> {
    this.#bounds(pos, data.length);
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.#fh.write(
        data,
        done,
        data.length - done,
        this.slot.offset + pos + done,
      );
      done += bytesWritten;
    }
  }

  async sync(): Promise<void> {
    await this.#fh.sync();
  }

  /** Flushes written data (fdatasync), not metadata: the writeback behind an install. */
  async datasync(): Promise<void> {
    await this.#fh.datasync();
  }

  async close(): Promise<void> {
    await this.#fh.close();
  }
}
