/**
 * A streaming, size-bounded tar parser (ustar, GNU long names, PAX with SCHILY./LIBARCHIVE.
 * xattrs). It only parses: the names it yields are raw and untrusted; tar-extract.ts decides
 * what may be written. Corrupt or unsupported archives throw IMAGE_INPUT_INVALID.
 */
import { FerryError } from '@ferry/core';
import { ByteReader } from './byte-reader.ts';

/** Kinds of tar entry Ferry extracts. */
export type TarEntryType = 'file' | 'hardlink' | 'symlink' | 'char' | 'block' | 'dir' | 'fifo';

/** One parsed tar header (after PAX / GNU long-name records are folded in). */
export interface TarEntry {
  path: string;
  type: TarEntryType;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  linkpath: string;
  devmajor: number;
  devminor: number;
  xattrs: Map<string, Buffer>;
  /** Offset of the entry's data in the (decompressed) stream. */
  dataOffset: number;
}

/** An entry and its data; the data must be consumed before the next entry is pulled, or is skipped. */
export interface TarItem {
  entry: TarEntry;
  body: AsyncIterable<Buffer>;
}

// Attack stopped: a PAX or GNU long-name record claiming gigabytes to exhaust memory.
const MAX_META = 1 << 20;
const MAX_FILE = 2 ** 45;
const TYPES: Record<string, TarEntryType> = {
  '0': 'file',
  '\0': 'file',
  '7': 'file',
  '1': 'hardlink',
  '2': 'symlink',
  '3': 'char',
  '4': 'block',
  '5': 'dir',
  '6': 'fifo',
};
const utf8 = new TextDecoder('utf-8', { fatal: true });

function invalid(msg: string): FerryError {
  return new FerryError('IMAGE_INPUT_INVALID', `corrupt tar: ${msg}`);
}

function text(b: Buffer): string {
  const end = b.indexOf(0);
  try {
    return utf8.decode(end < 0 ? b : b.subarray(0, end));
  } catch {
    throw invalid('a name is not valid UTF-8');
  }
}

function num(b: Buffer, field: string): number {
  if (b[0] !== undefined && b[0] & 0x80) {
    // GNU base-256: big-endian binary after the marker bit; negative values are refused.
    if (b[0] === 0xff) throw invalid(`negative ${field}`);
    let v = b[0] & 0x7f;
    for (const x of b.subarray(1)) v = v * 256 + x;
    if (!Number.isSafeInteger(v)) throw invalid(`${field} too large`);
    return v;
  }
  const s = b
    .toString('latin1')
    .replace(/[\0 ]+$/, '')
    .trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw invalid(`${field} is not octal`);
  return parseInt(s, 8);
}

function checksumOk(h: Buffer): boolean {
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < 512; i++) {
    const c = i >= 148 && i < 156 ? 32 : h[i]!;
    unsigned += c;
    signed += c > 127 ? c - 256 : c;
  }
  const want = num(h.subarray(148, 156), 'checksum');
  return want === unsigned || want === signed;
}

/** Parses PAX records ("LEN key=value\n") into a map of key to raw value bytes. */
export function parsePax(data: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let i = 0;
  while (i < data.length) {
    const sp = data.indexOf(0x20, i);
    const len = sp < 0 ? NaN : Number(data.toString('latin1', i, sp));
    if (!Number.isInteger(len) || len <= sp - i || i + len > data.length)
      throw invalid('bad PAX record length');
    const rec = data.subarray(sp + 1, i + len - 1);
    const eq = rec.indexOf(0x3d);
    if (eq < 0 || data[i + len - 1] !== 0x0a) throw invalid('bad PAX record');
    out.set(text(rec.subarray(0, eq)), Buffer.from(rec.subarray(eq + 1)));
    i += len;
  }
  return out;
}

function applyPax(e: TarEntry, pax: Map<string, Buffer>): void {
  for (const [k, v] of pax) {
    const s = (): string => text(v);
    if (k === 'path') e.path = s();
    else if (k === 'linkpath') e.linkpath = s();
    else if (k === 'size') e.size = paxNum(s(), k);
    else if (k === 'uid') e.uid = paxNum(s(), k);
    else if (k === 'gid') e.gid = paxNum(s(), k);
    else if (k.startsWith('SCHILY.xattr.')) e.xattrs.set(k.slice(13), v);
    else if (k.startsWith('LIBARCHIVE.xattr.'))
      e.xattrs.set(decodeURIComponent(k.slice(17)), Buffer.from(v.toString('latin1'), 'base64'));
    else if (k.startsWith('GNU.sparse.')) throw invalid('sparse files are not supported');
  }
}

function paxNum(s: string, k: string): number {
  if (!/^\d{1,16}$/.test(s)) throw invalid(`PAX ${k} is not a number`);
  return Number(s);
}

function parseHeader(h: Buffer, offset: number): TarEntry & { flag: string } {
  if (!checksumOk(h)) throw invalid(`header checksum mismatch at offset ${offset}`);
  const flag = String.fromCharCode(h[156]!);
  const ustar = h.toString('latin1', 257, 263) === 'ustar\0';
  const name = text(h.subarray(0, 100));
  const prefix = ustar ? text(h.subarray(345, 500)) : '';
  return {
    flag,
    path: prefix ? `${prefix}/${name}` : name,
    type: TYPES[flag] ?? 'file',
    mode: num(h.subarray(100, 108), 'mode') & 0o7777,
    uid: num(h.subarray(108, 116), 'uid'),
    gid: num(h.subarray(116, 124), 'gid'),
    size: num(h.subarray(124, 136), 'size'),
    linkpath: text(h.subarray(157, 257)),
    devmajor: num(h.subarray(329, 337), 'devmajor'),
    devminor: num(h.subarray(337, 345), 'devminor'),
    xattrs: new Map(),
    dataOffset: offset + 512,
  };
}

async function readMeta(r: ByteReader, size: number): Promise<Buffer> {
  if (size > MAX_META) throw invalid(`metadata record of ${size} bytes exceeds ${MAX_META}`);
  const data = await r.readExact(size);
  if (size > 0 && !data) throw invalid('ends inside a metadata record');
  await r.skip((512 - (size % 512)) % 512);
  return Buffer.from(data ?? Buffer.alloc(0));
}

/**
 * Yields the entries of a tar stream in order. Throws IMAGE_INPUT_INVALID for corrupt headers,
 * truncation, sparse or unknown entry types.
 *
 * @example
 * for await (const { entry, body } of readTar(createReadStream('rootfs.tar'))) console.log(entry.path);
 */
export async function* readTar(
  source: AsyncIterable<Buffer> | Iterable<Buffer>,
): AsyncGenerator<TarItem> {
  const r = new ByteReader(source);
  const globals = new Map<string, Buffer>();
  let local = new Map<string, Buffer>();
  let longName: string | undefined;
  let longLink: string | undefined;
  try {
    for (;;) {
      const offset = r.position;
      const h = await r.readExact(512);
      if (!h || h.every((b) => b === 0)) return; // end-of-archive marker (or bare EOF)
      const e = parseHeader(h, offset);
      if (e.flag === 'x' || e.flag === 'g') {
        const m = parsePax(await readMeta(r, e.size));
        for (const [k, v] of m) (e.flag === 'g' ? globals : local).set(k, v);
        continue;
      }
      if (e.flag === 'L' || e.flag === 'K') {
        const s = text(await readMeta(r, e.size));
        if (e.flag === 'L') longName = s;
        else longLink = s;
        continue;
      }
      if (e.flag === 'V') {
        await r.skip(Math.ceil(e.size / 512) * 512);
        continue;
      }
      if (!(e.flag in TYPES)) throw invalid(`unsupported entry type '${e.flag}' at ${offset}`);
      if (longName !== undefined) e.path = longName;
      if (longLink !== undefined) e.linkpath = longLink;
      applyPax(e, globals);
      applyPax(e, local);
      local = new Map<string, Buffer>();
      longName = longLink = undefined;
      if (e.size > MAX_FILE) throw invalid(`entry ${e.path} claims ${e.size} bytes`);
      // Only regular files carry data; a hardlink's or directory's size field is ignored.
      const dataSize = e.type === 'file' ? e.size : 0;
      if (e.type !== 'file') e.size = 0;
      e.dataOffset = r.position;
      let left = dataSize;
      const body = async function* (): AsyncGenerator<Buffer> {
        try {
          for await (const piece of r.take(left)) {
            left -= piece.length;
            yield piece;
          }
        } catch (err) {
          if (err instanceof RangeError) throw invalid(`truncated in ${e.path}: ${err.message}`);
          throw err;
        }
      };
      const { flag: _flag, ...entry } = e;
      yield { entry, body: body() };
      await r.skip(left + ((512 - (dataSize % 512)) % 512));
    }
  } catch (err) {
    if (err instanceof RangeError) throw invalid(`truncated: ${err.message}`);
    throw err;
  }
}
