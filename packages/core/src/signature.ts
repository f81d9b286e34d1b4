/**
 * Ed25519 threshold signatures over context-separated bytes, and the signed envelope that
 * carries a manifest. Specified in docs/formats/signatures.md.
 */
import { sign, verify } from 'node:crypto';
import { canonicalBytes, parseCanonicalJson, type JsonLimits } from './canonical-json.ts';
import { FerryError } from './errors.ts';
import type { PrivateKey } from './keys.ts';
import type { Keyring } from './keyring.ts';
import { MANIFEST_LIMITS, serializeManifest, validateManifest, type Manifest } from './manifest.ts';

/** One signature: the signer's key id and the base64 of the 64-byte ed25519 signature. */
export interface Signature {
  keyid: string;
  sig: string;
}

/** A document with the signatures over its canonical bytes. */
export interface SignedEnvelope<T = unknown> {
  signed: T;
  signatures: Signature[];
}

/** Most signatures an envelope may carry: bounds verification work. */
export const ENVELOPE_MAX_SIGNATURES = 64;

/** Bounds for parsing an envelope: a manifest one level deeper, plus the signature list. */
export const ENVELOPE_LIMITS: JsonLimits = Object.freeze({
  maxBytes: MANIFEST_LIMITS.maxBytes + ENVELOPE_MAX_SIGNATURES * 256,
  maxDepth: MANIFEST_LIMITS.maxDepth + 1,
});

const CONTEXT_RE = /^[a-z][a-z0-9-]{0,63}$/;
const KEYID_RE = /^[0-9a-f]{64}$/;

/** The signed message: `ferry-sig-v1 <context> <len>\n` + payload (pre-authentication encoding). */
function pae(context: string, payload: Uint8Array): Buffer {
  // The context can hold no space or newline, so the header parses one way only: a signature
  // for one kind of document can never verify as another.
  if (!CONTEXT_RE.test(context))
    throw new FerryError('INTERNAL', `bad signature context ${JSON.stringify(context)}`);
  return Buffer.concat([Buffer.from(`ferry-sig-v1 ${context} ${payload.length}\n`), payload]);
}

/**
 * Signs `payload` for `context` with each key (a key given twice signs once).
 *
 * @example
 * const sigs = signPayload('manifest', bytes, [releaseKey]);
 */
export function signPayload(context: string, payload: Uint8Array, keys: PrivateKey[]): Signature[] {
  const msg = pae(context, payload);
  const seen = new Set<string>();
  const out: Signature[] = [];
  for (const k of keys) {
    if (seen.has(k.keyId)) continue;
    seen.add(k.keyId);
    out.push({ keyid: k.keyId, sig: sign(null, msg, k.key).toString('base64') });
  }
  return out;
}

/** The 64 signature bytes, or null unless `sig` is canonical base64 of exactly 64 bytes. */
function decodeSig(sig: unknown): Buffer | null {
  if (typeof sig !== 'string' || sig.length !== 88) return null;
  const raw = Buffer.from(sig, 'base64');
  return raw.length === 64 && raw.toString('base64') === sig ? raw : null;
}

/**
 * Verifies a threshold of signatures from distinct trusted keys and returns the key ids that
 * verified. A key id listed twice counts once (TUF rule), so one key cannot meet a threshold
 * of two. Malformed entries count as invalid. Unless the threshold is met, throws in this
 * order: BUNDLE_UNSIGNED (no signatures), BUNDLE_SIGNATURE_INVALID (a malformed entry, or a
 * trusted key's signature that does not verify), BUNDLE_SIGNATURE_THRESHOLD (valid ones, too
 * few), BUNDLE_UNKNOWN_SIGNER (none from a trusted key).
 *
 * @example
 * const keyIds = verifySignatures('manifest', bytes, env.signatures, keyring);
 */
export function verifySignatures(
  context: string,
  payload: Uint8Array,
  signatures: Signature[],
  keyring: Keyring,
): string[] {
  // A hand-built keyring with threshold 0 would accept anything.
  if (!Number.isSafeInteger(keyring.threshold) || keyring.threshold < 1)
    throw new FerryError('KEYRING_INVALID', `threshold ${keyring.threshold} is below 1`);
  if (!Array.isArray(signatures) || signatures.length === 0)
    throw new FerryError('BUNDLE_UNSIGNED', 'no signatures');
  const msg = pae(context, payload);
  const valid = new Set<string>();
  let invalid = 0;
  for (const entry of signatures as unknown[]) {
    const e = (typeof entry === 'object' && entry !== null ? entry : {}) as Partial<Signature>;
    const raw = decodeSig(e.sig);
    if (typeof e.keyid !== 'string' || !KEYID_RE.test(e.keyid) || !raw) invalid++;
    else if (valid.has(e.keyid)) continue;
    else {
      const key = keyring.keys.get(e.keyid);
      if (!key) continue; // unknown signer: neither counts nor spoils the others
      if (verify(null, msg, key.key, raw)) valid.add(e.keyid);
      else invalid++;
    }
  }
  if (valid.size >= keyring.threshold) return [...valid];
  if (invalid > 0)
    throw new FerryError('BUNDLE_SIGNATURE_INVALID', `${invalid} signature(s) do not verify`);
  if (valid.size > 0)
    throw new FerryError(
      'BUNDLE_SIGNATURE_THRESHOLD',
      `${valid.size} valid signature(s) from distinct trusted keys, ${keyring.threshold} required`,
    );
  throw new FerryError('BUNDLE_UNKNOWN_SIGNER', 'no signature is from a trusted key');
}

function schema(message: string): FerryError {
  return new FerryError('MANIFEST_SCHEMA', `envelope: ${message}`);
}

/** Checks the envelope shape (not the signatures): MANIFEST_SCHEMA if it is wrong. */
function validateEnvelope(v: unknown): SignedEnvelope {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw schema('expected an object');
  const o = v as Record<string, unknown>;
  // Unsigned extra fields could smuggle data past the signature: refuse them.
  const extra = Object.keys(o).filter((k) => k !== 'signed' && k !== 'signatures');
  if (extra.length > 0) throw schema(`unknown field ${JSON.stringify(extra[0])}`);
  const { signed, signatures } = o;
  if (typeof signed !== 'object' || signed === null || Array.isArray(signed))
    throw schema('signed: expected an object');
  if (!Array.isArray(signatures)) throw schema('signatures: expected an array');
  if (signatures.length > ENVELOPE_MAX_SIGNATURES)
    throw schema(`signatures: more than ${ENVELOPE_MAX_SIGNATURES}`);
  signatures.forEach((s: unknown, i) => {
    const e = s as Record<string, unknown>;
    if (typeof s !== 'object' || s === null || Array.isArray(s))
      throw schema(`signatures[${i}]: expected an object`);
    if (Object.keys(e).length !== 2 || typeof e.keyid !== 'string' || typeof e.sig !== 'string')
      throw schema(`signatures[${i}]: expected exactly {keyid, sig} strings`);
  });
  return { signed, signatures: signatures as Signature[] };
}

/**
 * Canonical bytes of an envelope, `{"signatures":[...],"signed":{...}}`. MANIFEST_SCHEMA if its
 * shape is wrong.
 *
 * @example
 * await writeFile('manifest.signed.json', serializeEnvelope(signManifest(m, [key])));
 */
export function serializeEnvelope(env: SignedEnvelope): Buffer {
  const bytes = canonicalBytes(validateEnvelope(env));
  parseCanonicalJson(bytes, ENVELOPE_LIMITS); // never write what a reader would refuse
  return bytes;
}

/**
 * Parses untrusted envelope bytes: bounded by ENVELOPE_LIMITS, canonical JSON required, shape
 * checked (MANIFEST_SCHEMA). Signatures are not verified here.
 *
 * @example
 * const { manifest } = verifyManifestEnvelope(parseEnvelope(bytes), keyring);
 */
export function parseEnvelope(bytes: Uint8Array): SignedEnvelope<unknown> {
  return validateEnvelope(parseCanonicalJson(bytes, ENVELOPE_LIMITS));
}

/**
 * Validates `m` and signs its canonical bytes with context `manifest`.
 *
 * @example
 * const env = signManifest(manifest, [await loadPrivateKey('release.key')]);
 */
export function signManifest(m: Manifest, keys: PrivateKey[]): SignedEnvelope<Manifest> {
  return { signed: m, signatures: signPayload('manifest', serializeManifest(m), keys) };
}

/**
 * Verifies the envelope's signatures against `keyring` FIRST (nothing unsigned is interpreted),
 * then checks the signed manifest: MANIFEST_TOO_LARGE beyond MANIFEST_LIMITS, then the schema.
 *
 * @example
 * const { manifest, keyIds } = verifyManifestEnvelope(parseEnvelope(bytes), keyring);
 */
export function verifyManifestEnvelope(
  env: SignedEnvelope<unknown>,
  keyring: Keyring,
): { manifest: Manifest; keyIds: string[] } {
  const payload = canonicalBytes(env.signed);
  if (payload.length > MANIFEST_LIMITS.maxBytes)
    throw new FerryError('MANIFEST_TOO_LARGE', `signed manifest is ${payload.length} bytes`);
  const keyIds = verifySignatures('manifest', payload, env.signatures, keyring);
  return { manifest: validateManifest(env.signed), keyIds };
}
