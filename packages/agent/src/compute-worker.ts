/**
 * A compute worker of ComputePool: decompresses and verifies chunks, and hashes dm-verity
 * leaves, off the main thread. Buffers travel as transferred ArrayBuffers, not copies.
 */
import { parentPort } from 'node:worker_threads';
import { decompressChunk, FerryError, isFerryError, verityLeafDigests } from '@ferry/core';

export type ComputeJob =
  | { seq: number; op: 'decode'; frames: ArrayBuffer; items: DecodeItem[] }
  | { seq: number; op: 'leaves'; salt: ArrayBuffer; data: ArrayBuffer };

/** One chunk of a decode batch: its frame at [offset, offset + length) of the frames buffer. */
export interface DecodeItem {
  id: string;
  offset: number;
  length: number;
  size: number;
}

export type ComputeReply =
  { seq: number; data: ArrayBuffer } | { seq: number; error: { code: string; message: string } };

/** An ArrayBuffer holding exactly `b`'s bytes, without a copy when `b` owns its whole buffer. */
export function ownBuffer(b: Uint8Array): ArrayBuffer {
  if (b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && b.buffer instanceof ArrayBuffer)
    return b.buffer;
  return new Uint8Array(b).buffer; // a copy: Buffer#slice would only be a view
}

/** Decompresses and verifies every chunk of a batch into one buffer, in order. */
function decodeBatch(frames: Buffer, items: DecodeItem[]): Buffer {
  const out = Buffer.allocUnsafe(items.reduce((n, i) => n + i.size, 0));
  let at = 0;
  for (const i of items) {
    const data = decompressChunk(i.id, frames.subarray(i.offset, i.offset + i.length), i.size);
    if (data.length !== i.size)
      throw new FerryError(
        'CHUNK_HASH_MISMATCH',
        `chunk ${i.id} is ${data.length} bytes, the index says ${i.size}`,
      );
    at += data.copy(out, at);
  }
  return out;
}

parentPort?.on('message', (job: ComputeJob) => {
  try {
    const out =
      job.op === 'decode'
        ? decodeBatch(Buffer.from(job.frames), job.items)
        : verityLeafDigests(Buffer.from(job.salt), Buffer.from(job.data));
    const data = ownBuffer(out);
    parentPort!.postMessage({ seq: job.seq, data } satisfies ComputeReply, [data]);
  } catch (e) {
    const error = isFerryError(e)
      ? { code: e.code, message: e.message }
      : { code: 'INTERNAL', message: String((e as Error)?.message ?? e) };
    parentPort!.postMessage({ seq: job.seq, error } satisfies ComputeReply);
  }
});
