/**
 * Keyrings: the public keys a device or operator trusts, and how many of them must sign.
 * The three on-disk forms are specified in docs/formats/signatures.md.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseJsonBounded } from './canonical-json.ts';
import { FerryError, isFerryError, withContext } from './errors.ts';
import { KEY_FILE_MAX_BYTES, parsePublicKey, readBoundedFile, type PublicKey } from './keys.ts';

/** Trusted keys by key id, and the number of distinct keys whose signatures are required. */
export interface Keyring {
  threshold: number;
  keys: Map<string, PublicKey>;
}

/** Most keys a keyring may hold: bounds the work of loading an untrusted keyring. */
export const KEYRING_MAX_KEYS = 256;
const KEYRING_FILE_MAX_BYTES = 1024 * 1024;
const THRESHOLD_FILE_RE = /^[1-9][0-9]{0,5}\s*$/;

const invalid = (message: string, cause?: unknown): FerryError =>
  new FerryError('KEYRING_INVALID', message, { cause });

/** Builds a keyring, refusing duplicates and thresholds outside 1..keys. */
export function makeKeyring(keys: PublicKey[], threshold: number): Keyring {
  if (keys.length === 0) throw invalid('no keys');
  if (keys.length > KEYRING_MAX_KEYS) throw invalid(`more than ${KEYRING_MAX_KEYS} keys`);
  const map = new Map<string, PublicKey>();
  for (const k of keys) {
    // A key listed twice would let one signer count as two.
    if (map.has(k.keyId)) throw invalid(`key ${k.keyId} is listed twice`);
    map.set(k.keyId, k);
  }
  if (!Number.isSafeInteger(threshold) || threshold < 1 || threshold > map.size)
    throw invalid(`threshold ${String(threshold)} is not between 1 and ${map.size}`);
  return { threshold, keys: map };
}

function parseKey(pem: unknown, where: string): PublicKey {
  if (typeof pem !== 'string') throw invalid(`${where}: expected a PEM string`);
  try {
    return parsePublicKey(pem);
  } catch (e) {
    throw invalid(`${where}: ${(e as Error).message}`, e);
  }
}

function keyringFromJson(bytes: Buffer): Keyring {
  let doc: unknown;
  try {
    doc = parseJsonBounded(bytes, { maxBytes: KEYRING_FILE_MAX_BYTES, maxDepth: 2 });
  } catch (e) {
    throw invalid(`not a JSON keyring: ${(e as Error).message}`, e);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc))
    throw invalid('expected a JSON object');
  const o = doc as Record<string, unknown>;
  const unknown = Object.keys(o).filter((k) => k !== 'threshold' && k !== 'keys');
  if (unknown.length > 0) throw invalid(`unknown field ${JSON.stringify(unknown[0])}`);
  if (!Array.isArray(o.keys)) throw invalid('keys: expected an array of PEM strings');
  if (o.keys.length > KEYRING_MAX_KEYS) throw invalid(`more than ${KEYRING_MAX_KEYS} keys`);
  const keys = o.keys.map((pem, i) => parseKey(pem, `keys[${i}]`));
  if (typeof o.threshold !== 'number') throw invalid('threshold: expected an integer');
  return makeKeyring(keys, o.threshold);
}

async function keyringFromFile(path: string): Promise<Keyring> {
  const { bytes } = await readBoundedFile(path, KEYRING_FILE_MAX_BYTES, 'KEYRING_INVALID');
  if (bytes.toString('utf8').trimStart().startsWith('-----BEGIN'))
    return makeKeyring([parseKey(bytes.toString('utf8'), path)], 1);
  return keyringFromJson(bytes);
}

async function keyringFromDir(path: string): Promise<Keyring> {
  const names = (await readdir(path)).filter((n) => n.endsWith('.pub')).sort();
  if (names.length > KEYRING_MAX_KEYS) throw invalid(`more than ${KEYRING_MAX_KEYS} keys`);
  const keys: PublicKey[] = [];
  for (const name of names) {
    const { bytes } = await readBoundedFile(
      join(path, name),
      KEY_FILE_MAX_BYTES,
      'KEYRING_INVALID',
    );
    keys.push(parseKey(bytes.toString('utf8'), name));
  }
  let threshold = 1;
  const tpath = join(path, 'threshold');
  const hasThreshold = await stat(tpath).then(
    () => true,
    () => false,
  );
  if (hasThreshold) {
    const text = (await readBoundedFile(tpath, 64, 'KEYRING_INVALID')).bytes.toString('utf8');
    if (!THRESHOLD_FILE_RE.test(text)) throw invalid('threshold: expected a positive integer');
    threshold = Number(text.trim());
  }
  return makeKeyring(keys, threshold);
}

/**
 * Loads a keyring from `path`, which is one of: a PEM public key file (threshold 1); a JSON
 * keyring file `{"threshold": n, "keys": ["-----BEGIN PUBLIC KEY-----...", ...]}`; or a
 * directory of `*.pub` PEM files with an optional file `threshold` holding an integer
 * (default 1). KEYRING_INVALID for anything malformed, a duplicate key, or a threshold outside
 * 1..number of keys; IO if the path cannot be read.
 *
 * @example
 * const keyring = await loadKeyring('/etc/ferry/keyring.d');
 */
export async function loadKeyring(path: string): Promise<Keyring> {
  try {
    const st = await stat(path);
    return st.isDirectory() ? await keyringFromDir(path) : await keyringFromFile(path);
  } catch (e) {
    if (isFerryError(e) && e.code !== 'KEYRING_INVALID' && e.code !== 'IO')
      throw invalid(`keyring ${path}: ${e.message}`, e);
    throw withContext(`keyring ${path}`, e);
  }
}
