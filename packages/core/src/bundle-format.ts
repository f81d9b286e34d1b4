/**
 * The byte layout of a Ferry bundle (format 1), as pure encode/decode functions.
 *
 * ```
 * 0        header (64 bytes, little-endian)
 * 64       signed manifest envelope (canonical JSON), envelopeLength bytes
 * ...      index section: chunk index of every image + payload table, indexLength bytes
 * ...      zero padding up to payloadOffset (a multiple of 4096)
 * payload  compressed chunks, one zstd frame each, in payload-table order, payloadLength bytes
 * ```
 * Everything a device needs before fetching chunks sits in one prefix of the file, so one HTTP
 * range request reads it; each chunk is then one range request. See docs/formats/bundle.md.
 */
import { FerryError } from './errors.ts';

export const BUNDLE_MAGIC = Buffer.from('FERRYBDL', 'latin1');
export const BUNDLE_FORMAT_VERSION = 1;
export const BUNDLE_HEADER_SIZE = 64;
export const BUNDLE_ALIGN = 4096;
/** Upper bounds checked before anything is read, so a forged header cannot make us allocate. */
export const BUNDLE_LIMITS = {
  maxEnvelope: 2 * 1024 * 1024,
  maxIndexSection: 256 * 1024 * 1024,
  maxImages: 64,
  maxImageName: 32,
  maxPayloadChunks: 16 * 1024 * 1024,
};
const TABLE_MAGIC = Buffer.from('FPAYLOAD', 'latin1');
const TABLE_ENTRY = 32 + 4;

export interface BundleHeader {
  formatVersion: number;
  envelopeLength: number;
  indexLength: number;
  payloadOffset: number;
  payloadLength: number;
  totalSize: number;
}

/** One compressed chunk in the payload: where it is and how long its zstd frame is. */
export interface PayloadEntry {
  id: string;
  offset: number;
  length: number;
}

export interface IndexSection {
  /** Serialized chunk index of each image, keyed by slot class, in the order stored. */
  chunkIndexes: Map<string, Buffer>;
  payload: PayloadEntry[];
}

export function alignUp(n: number, to = BUNDLE_ALIGN): number {
  return Math.ceil(n / to) * to;
}

/** Where the payload starts for the given section lengths. */
export function payloadOffsetFor(envelopeLength: number, indexLength: number): number {
  return alignUp(BUNDLE_HEADER_SIZE + envelopeLength + indexLength);
}

export function encodeHeader(h: Omit<BundleHeader, 'formatVersion' | 'totalSize'>): Buffer {
  const b = Buffer.alloc(BUNDLE_HEADER_SIZE);
  BUNDLE_MAGIC.copy(b, 0);
  b.writeUInt32LE(BUNDLE_FORMAT_VERSION, 8);
  b.writeUInt32LE(BUNDLE_HEADER_SIZE, 12);
  b.writeBigUInt64LE(BigInt(h.envelopeLength), 16);
  b.writeBigUInt64LE(BigInt(h.indexLength), 24);
  b.writeBigUInt64LE(BigInt(h.payloadOffset), 32);
  b.writeBigUInt64LE(BigInt(h.payloadLength), 40);
  b.writeBigUInt64LE(BigInt(h.payloadOffset + h.payloadLength), 48);
  return b;
}

function u64(b: Buffer, at: number, field: string): number {
  const v = b.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER))
    throw new FerryError('BUNDLE_HEADER_INVALID', `${field} ${v} is out of range`);
  return Number(v);
}

/**
 * Decodes and checks the 64-byte header against the real file size. Order of checks: length,
 * magic, version, field consistency, then file size (truncated / trailing bytes).
 */
export function decodeHeader(b: Buffer, fileSize: number): BundleHeader {
  if (b.length < BUNDLE_MAGIC.length || fileSize < BUNDLE_MAGIC.length)
    throw new FerryError('BUNDLE_TRUNCATED', `file is ${fileSize} bytes, shorter than a header`);
  if (!b.subarray(0, 8).equals(BUNDLE_MAGIC))
    throw new FerryError('BUNDLE_MAGIC', 'not a Ferry bundle (bad magic)');
  if (b.length < BUNDLE_HEADER_SIZE || fileSize < BUNDLE_HEADER_SIZE)
    throw new FerryError('BUNDLE_TRUNCATED', `file is ${fileSize} bytes, shorter than a header`);
  const formatVersion = b.readUInt32LE(8);
  if (formatVersion !== BUNDLE_FORMAT_VERSION)
    throw new FerryError(
      'BUNDLE_FORMAT_VERSION',
      `bundle format ${formatVersion} is not supported (this Ferry reads format ${BUNDLE_FORMAT_VERSION})`,
    );
  if (b.readUInt32LE(12) !== BUNDLE_HEADER_SIZE)
    throw new FerryError(
      'BUNDLE_HEADER_INVALID',
      `header size ${b.readUInt32LE(12)} is not ${BUNDLE_HEADER_SIZE}`,
    );
  const h: BundleHeader = {
    formatVersion,
    envelopeLength: u64(b, 16, 'envelope length'),
    indexLength: u64(b, 24, 'index length'),
    payloadOffset: u64(b, 32, 'payload offset'),
    payloadLength: u64(b, 40, 'payload length'),
    totalSize: u64(b, 48, 'total size'),
  };
  if (b.readBigUInt64LE(56) !== 0n)
    throw new FerryError('BUNDLE_HEADER_INVALID', 'reserved header bytes are not zero');
  if (h.envelopeLength > BUNDLE_LIMITS.maxEnvelope)
    throw new FerryError(
      'MANIFEST_TOO_LARGE',
      `signed manifest of ${h.envelopeLength} bytes exceeds ${BUNDLE_LIMITS.maxEnvelope}`,
    );
  if (h.indexLength > BUNDLE_LIMITS.maxIndexSection)
    throw new FerryError(
      'BUNDLE_HEADER_INVALID',
      `index section of ${h.indexLength} bytes exceeds ${BUNDLE_LIMITS.maxIndexSection}`,
    );
  if (h.payloadOffset !== payloadOffsetFor(h.envelopeLength, h.indexLength))
    throw new FerryError(
      'BUNDLE_HEADER_INVALID',
      `payload offset ${h.payloadOffset} does not follow the sections`,
    );
  if (h.totalSize !== h.payloadOffset + h.payloadLength)
    throw new FerryError(
      'BUNDLE_HEADER_INVALID',
      `total size ${h.totalSize} is not payload offset + payload length`,
    );
  if (fileSize < h.totalSize)
    throw new FerryError(
      'BUNDLE_TRUNCATED',
      `file is ${fileSize} bytes, the header declares ${h.totalSize}`,
    );
  if (fileSize > h.totalSize)
    throw new FerryError(
      'BUNDLE_TRAILING_DATA',
      `file is ${fileSize} bytes, ${fileSize - h.totalSize} more than the header declares`,
    );
  return h;
}

/** Header, envelope, index section and zero padding: every byte of a bundle before its payload. */
export function encodeBundleHead(envelope: Buffer, index: Buffer, payloadLength: number): Buffer {
  const payloadOffset = payloadOffsetFor(envelope.length, index.length);
  const head = Buffer.alloc(payloadOffset);
  encodeHeader({
    envelopeLength: envelope.length,
    indexLength: index.length,
    payloadOffset,
    payloadLength,
  }).copy(head, 0);
  envelope.copy(head, BUNDLE_HEADER_SIZE);
  index.copy(head, BUNDLE_HEADER_SIZE + envelope.length);
  return head;
}

/** Index section: u32 image count; per image u8 name length, name, u64 index length, index; then the payload table. */
export function encodeIndexSection(
  chunkIndexes: Map<string, Buffer>,
  payload: Array<{ id: string; length: number }>,
): Buffer {
  const parts: Buffer[] = [];
  const count = Buffer.alloc(4);
  count.writeUInt32LE(chunkIndexes.size);
  parts.push(count);
  for (const [name, index] of chunkIndexes) {
    const nameBytes = Buffer.from(name, 'utf8');
    const head = Buffer.alloc(1 + nameBytes.length + 8);
    head.writeUInt8(nameBytes.length, 0);
    nameBytes.copy(head, 1);
    head.writeBigUInt64LE(BigInt(index.length), 1 + nameBytes.length);
    parts.push(head, index);
  }
  const table = Buffer.alloc(8 + 8 + payload.length * TABLE_ENTRY);
  TABLE_MAGIC.copy(table, 0);
  table.writeBigUInt64LE(BigInt(payload.length), 8);
  payload.forEach((p, i) => {
    const at = 16 + i * TABLE_ENTRY;
    Buffer.from(p.id, 'hex').copy(table, at);
    table.writeUInt32LE(p.length, at + 32);
  });
  parts.push(table);
  return Buffer.concat(parts);
}

class Cursor {
  at = 0;
  readonly b: Buffer;
  constructor(b: Buffer) {
    this.b = b;
  }
  take(n: number, what: string): Buffer {
    if (n > this.b.length - this.at)
      throw new FerryError('BUNDLE_LAYOUT', `index section ends inside ${what}`);
    const s = this.b.subarray(this.at, this.at + n);
    this.at += n;
    return s;
  }
}

/**
 * Decodes the index section and checks the payload table against the payload length: every
 * entry lies inside the payload, entries are contiguous from offset 0 and cover it exactly,
 * and no chunk appears twice. (Which chunks must be present is checked against the chunk indexes.)
 */
export function decodeIndexSection(b: Buffer, payloadLength: number): IndexSection {
  const c = new Cursor(b);
  const count = c.take(4, 'the image count').readUInt32LE(0);
  if (count === 0 || count > BUNDLE_LIMITS.maxImages)
    throw new FerryError(
      'BUNDLE_LAYOUT',
      `image count ${count} is outside 1..${BUNDLE_LIMITS.maxImages}`,
    );
  const chunkIndexes = new Map<string, Buffer>();
  for (let i = 0; i < count; i++) {
    const nameLength = c.take(1, 'an image name').readUInt8(0);
    if (nameLength === 0 || nameLength > BUNDLE_LIMITS.maxImageName)
      throw new FerryError('BUNDLE_LAYOUT', `image name length ${nameLength} is invalid`);
    const name = c.take(nameLength, 'an image name').toString('utf8');
    const length = c.take(8, 'a chunk index length').readBigUInt64LE(0);
    if (length > BigInt(b.length))
      throw new FerryError('BUNDLE_LAYOUT', `chunk index of ${name} runs past the index section`);
    if (chunkIndexes.has(name))
      throw new FerryError('BUNDLE_LAYOUT', `image ${name} appears twice`);
    chunkIndexes.set(name, c.take(Number(length), `the chunk index of ${name}`));
  }
  if (!c.take(8, 'the payload table').equals(TABLE_MAGIC))
    throw new FerryError('BUNDLE_LAYOUT', 'payload table magic is wrong');
  const entries = c.take(8, 'the payload table').readBigUInt64LE(0);
  if (
    entries > BigInt(BUNDLE_LIMITS.maxPayloadChunks) ||
    entries * BigInt(TABLE_ENTRY) !== BigInt(b.length - c.at)
  )
    throw new FerryError(
      'BUNDLE_LAYOUT',
      `payload table of ${entries} entries does not fill the index section`,
    );
  const payload: PayloadEntry[] = [];
  const seen = new Set<string>();
  let offset = 0;
  for (let i = 0; i < Number(entries); i++) {
    const e = c.take(TABLE_ENTRY, 'the payload table');
    const id = e.subarray(0, 32).toString('hex');
    const length = e.readUInt32LE(32);
    if (seen.has(id))
      throw new FerryError('BUNDLE_LAYOUT', `chunk ${id} appears twice in the payload table`);
    if (length === 0 || offset + length > payloadLength)
      throw new FerryError(
        'BUNDLE_LAYOUT',
        `chunk ${id} (${length} bytes at ${offset}) points past the payload of ${payloadLength} bytes`,
      );
    seen.add(id);
    payload.push({ id, offset, length });
    offset += length;
  }
  if (offset !== payloadLength)
    throw new FerryError(
      'BUNDLE_LAYOUT',
      `payload table covers ${offset} of ${payloadLength} payload bytes`,
    );
  return { chunkIndexes, payload };
}
