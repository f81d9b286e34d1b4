/**
 * A compute worker of ComputePool: decompresses and verifies chunks, hashes dm-verity leaves and
 * keeps running SHA-256 digests of whole images, off the main thread. Buffers travel as
 * transferred ArrayBuffers or as views of a SharedArrayBuffer, never as copies.
 */
import { createHash, type Hash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import { decompressChunkInto, isFerryError, verityLeafDigests } from '@ferry/core/codec';

/** Bytes [offset, offset + length) of a buffer the worker reads but does not keep. */
export interface SharedView {
  buffer: ArrayBuffer | SharedArrayBuffer;
  offset: number;
  length: number;
}

export type ComputeJob =
  /** Decodes into `out` when given (the reply is then empty), else into a new buffer. */
  | { seq: number; op: 'decode'; frames: SharedView; items: DecodeItem[]; out?: SharedView }
  | { seq: number; op: 'leaves'; salt: ArrayBuffer; data: SharedView }
  /** Feeds the next bytes to running digest `stream` (created on first use). */
  | { seq: number; op: 'digest-update'; stream: number; data: SharedView }
  /** Ends running digest `stream`: its SHA-256 (32 bytes). */
  | { seq: number; op: 'digest-end'; stream: number };

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

/** Decompresses and verifies every chunk of a batch straight into one buffer, in order. */
function decodeBatch(frames: Buffer, items: DecodeItem[], into?: Buffer): Buffer {
  const out = into ?? Buffer.allocUnsafe(items.reduce((n, i) => n + i.size, 0));
  let at = 0;
  for (const i of items) {
    decompressChunkInto(i.id, frames.subarray(i.offset, i.offset + i.length), i.size, out, at);
    at += i.size;
  }
  return out;
}

const view = (v: SharedView) => Buffer.from(v.buffer, v.offset, v.length);
const EMPTY = new ArrayBuffer(0);
const streams = new Map<number, Hash>();

function runJob(job: ComputeJob): ArrayBuffer {
  switch (job.op) {
    case 'decode':
      if (job.out) {
        decodeBatch(view(job.frames), job.items, view(job.out));
        return EMPTY;
      }
      return ownBuffer(decodeBatch(view(job.frames), job.items));
    case 'leaves':
      return ownBuffer(verityLeafDigests(Buffer.from(job.salt), view(job.data)));
    case 'digest-update': {
      let h = streams.get(job.stream);
      if (!h) streams.set(job.stream, (h = createHash('sha256')));
      h.update(view(job.data));
      return EMPTY;
    }
    case 'digest-end': {
      const h = streams.get(job.stream) ?? createHash('sha256');
      streams.delete(job.stream);
      return ownBuffer(h.digest());
    }
  }
}

parentPort?.on('message', (job: ComputeJob) => {
  try {
    const data = runJob(job);
    parentPort!.postMessage(
      { seq: job.seq, data } satisfies ComputeReply,
      data.byteLength ? [data] : [],
    );
  } catch (e) {
    const error = isFerryError(e)
      ? { code: e.code, message: e.message }
      : { code: 'INTERNAL', message: String((e as Error)?.message ?? e) };
    parentPort!.postMessage({ seq: job.seq, error } satisfies ComputeReply);
  }
});
