/**
 * Canonical JSON (RFC 8785, JSON Canonicalization Scheme) and a size- and depth-bounded parser.
 * Signatures in Ferry always cover canonical bytes, so two encodings of one document can never
 * carry different meanings past a signature check.
 */
import { FerryError } from './errors.ts';

/** Bounds applied to untrusted JSON before it is parsed. */
export interface JsonLimits {
  /** Largest accepted input in bytes. */
  maxBytes: number;
  /** Deepest accepted nesting of arrays and objects (a top-level object is depth 1). */
  maxDepth: number;
}

const malformed = (message: string): FerryError => new FerryError('JSON_MALFORMED', message);

function isPlainObject(v: object): v is Record<string, unknown> {
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

const MAX_SERIALIZE_DEPTH = 1000;

/** Serialization state: open containers (cycle check) and the path, rendered only on error. */
interface Walk {
  seen: Set<object>;
  path: (string | number)[];
}

function fail(w: Walk, what: string): FerryError {
  const path = w.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${p}`)).join('');
  return malformed(`$${path}: ${what}`);
}

function serializeString(s: string, w: Walk): string {
  // I-JSON (RFC 7493) forbids lone surrogates; JCS requires I-JSON input.
  if (!s.isWellFormed()) throw fail(w, 'string holds a lone surrogate');
  // Since ES2019 JSON.stringify escapes exactly as JCS demands: \b \t \n \f \r \" \\ and
  // \u00xx (lowercase hex) for the other controls; everything else is emitted as is.
  return JSON.stringify(s);
}

function serialize(v: unknown, w: Walk): string {
  switch (typeof v) {
    case 'string':
      return serializeString(v, w);
    case 'number':
      if (!Number.isFinite(v)) throw fail(w, `${v} is not a JSON number`);
      // ECMAScript Number::toString is the JCS number format; it also turns -0 into "0".
      return JSON.stringify(v);
    case 'boolean':
      return v ? 'true' : 'false';
    case 'object':
      if (v === null) return 'null';
      if (w.seen.has(v)) throw fail(w, 'cyclic structure');
      // Parsed input is depth-bounded already; this keeps hand-built values off the stack limit.
      if (w.path.length >= MAX_SERIALIZE_DEPTH)
        throw new FerryError('MANIFEST_TOO_DEEP', `nesting deeper than ${MAX_SERIALIZE_DEPTH}`);
      w.seen.add(v);
      try {
        return Array.isArray(v) ? serializeArray(v, w) : serializeObject(v, w);
      } finally {
        w.seen.delete(v);
      }
    default:
      throw fail(w, `${typeof v} is not a JSON value`);
  }
}

function serializeArray(a: unknown[], w: Walk): string {
  let out = '[';
  for (let i = 0; i < a.length; i++) {
    w.path.push(i);
    out += (i ? ',' : '') + serialize(a[i], w);
    w.path.pop();
  }
  return out + ']';
}

function serializeObject(o: object, w: Walk): string {
  if (!isPlainObject(o)) throw fail(w, 'not a plain object');
  // Default sort compares UTF-16 code units, which is exactly the JCS key order.
  const keys = Object.keys(o).sort();
  let out = '{';
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!;
    w.path.push(k);
    out += `${i ? ',' : ''}${serializeString(k, w)}:${serialize(o[k], w)}`;
    w.path.pop();
  }
  return out + '}';
}

/**
 * The RFC 8785 canonical form of a JSON value: keys sorted by UTF-16 code units, ECMAScript
 * number formatting, minimal string escaping, no whitespace.
 * Throws JSON_MALFORMED for anything that is not I-JSON: undefined, functions, symbols, bigints,
 * NaN/Infinity, non-plain objects (Date, Map, Buffer...), cycles and lone surrogates;
 * MANIFEST_TOO_DEEP beyond 1000 levels of nesting.
 *
 * @example
 * canonicalize({ b: [1e21, -0], a: '\u20ac' }); // '{"a":"€","b":[1e+21,0]}'
 */
export function canonicalize(value: unknown): string {
  return serialize(value, { seen: new Set(), path: [] });
}

/** UTF-8 bytes of {@link canonicalize}: the bytes signatures cover. */
export function canonicalBytes(value: unknown): Buffer {
  return Buffer.from(canonicalize(value), 'utf8');
}

const isWs = (c: number): boolean => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;

/** Index just past the string literal opening at `start`. */
function stringEnd(text: string, start: number): number {
  for (let j = start + 1; j < text.length; j++) {
    const c = text.charCodeAt(j);
    if (c === 0x5c) j++;
    else if (c === 0x22) return j + 1;
  }
  throw malformed('unterminated string');
}

/**
 * One linear pass over the text, without recursion, before JSON.parse sees it: refuses nesting
 * deeper than `maxDepth` (a stack-overflow attack on the parser) and duplicate object keys
 * (JSON.parse keeps the last one silently, so two readers could see different documents).
 */
function prescan(text: string, maxDepth: number): void {
  const stack: (Set<string> | null)[] = []; // a key set per open object, null per open array
  for (let i = 0; i < text.length;) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      const end = stringEnd(text, i);
      const keys = stack[stack.length - 1];
      let j = end;
      while (j < text.length && isWs(text.charCodeAt(j))) j++;
      if (keys && text.charCodeAt(j) === 0x3a) addKey(keys, text.slice(i, end));
      i = end;
      continue;
    }
    if (c === 0x7b || c === 0x5b) {
      if (stack.length >= maxDepth)
        throw new FerryError('MANIFEST_TOO_DEEP', `nesting deeper than ${maxDepth}`);
      stack.push(c === 0x7b ? new Set() : null);
    } else if (c === 0x7d || c === 0x5d) stack.pop();
    i++;
  }
}

function addKey(keys: Set<string>, literal: string): void {
  let key: string;
  try {
    // Without escapes the key is the literal's inside; the full parse later checks the rest.
    key = literal.includes('\\') ? (JSON.parse(literal) as string) : literal.slice(1, -1);
  } catch (e) {
    throw new FerryError('JSON_MALFORMED', `bad object key ${literal.slice(0, 40)}`, { cause: e });
  }
  if (keys.has(key)) throw malformed(`duplicate object key ${JSON.stringify(key).slice(0, 80)}`);
  keys.add(key);
}

/**
 * Parses untrusted JSON within `limits`. Input must be strict UTF-8 without a BOM.
 * Throws MANIFEST_TOO_LARGE, MANIFEST_TOO_DEEP (checked before parsing, so deep nesting cannot
 * overflow the stack) or JSON_MALFORMED (also for invalid UTF-8 and duplicate keys).
 *
 * @example
 * const v = parseJsonBounded(await readFile(p), { maxBytes: 1 << 20, maxDepth: 16 });
 */
export function parseJsonBounded(bytes: Uint8Array, limits: JsonLimits): unknown {
  if (bytes.length > limits.maxBytes)
    throw new FerryError(
      'MANIFEST_TOO_LARGE',
      `${bytes.length} bytes exceeds the limit of ${limits.maxBytes}`,
    );
  let text: string;
  try {
    // ignoreBOM keeps a BOM in the text, where JSON.parse then refuses it.
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch (e) {
    throw new FerryError('JSON_MALFORMED', 'input is not valid UTF-8', { cause: e });
  }
  prescan(text, limits.maxDepth);
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new FerryError('JSON_MALFORMED', (e as Error).message, { cause: e });
  }
}

/**
 * {@link parseJsonBounded}, then requires the input to be exactly its own canonical form
 * (JSON_NOT_CANONICAL otherwise). Values outside I-JSON, such as 1e400 or a lone surrogate,
 * give JSON_MALFORMED.
 *
 * @example
 * const signed = parseCanonicalJson(bytes, MANIFEST_LIMITS);
 */
export function parseCanonicalJson(bytes: Uint8Array, limits: JsonLimits): unknown {
  const value = parseJsonBounded(bytes, limits);
  const canonical = canonicalBytes(value);
  if (!canonical.equals(bytes))
    throw new FerryError('JSON_NOT_CANONICAL', 'input is not in RFC 8785 canonical form');
  return value;
}
