/**
 * Ferry's ed25519 keys as TUF keys. A TUF key is `{keytype: "ed25519", scheme: "ed25519",
 * keyval: {public: <hex of the raw 32-byte key>}}`; its TUF key id is the SHA-256 of the
 * canonical JSON of that object (TUF spec, "keyid"). That is not Ferry's bundle key id (the
 * SHA-256 of the raw key, core/keys.ts): the same key has two ids, one per format.
 */
import { createHash, createPublicKey, sign, type KeyObject } from 'node:crypto';
import { canonicalize } from '@tufjs/canonical-json';
import {
  Key,
  Signature,
  type Metadata,
  type Root,
  type Snapshot,
  type Targets,
  type Timestamp,
} from '@tufjs/models';
import { FerryError, type PrivateKey, type PublicKey } from '@ferry/core';

/** JSON as @tufjs/models reads and writes it. */
export type Json = Parameters<typeof Key.fromJSON>[1];

/** Which keys may sign a role, and how many must. */
export interface RoleKeys {
  keyIDs: string[];
  threshold: number;
}

/** Metadata of any of the four kinds. */
export type AnyMetadata =
  Metadata<Root> | Metadata<Targets> | Metadata<Snapshot> | Metadata<Timestamp>;

function rawPublic(key: KeyObject): Buffer {
  if (key.asymmetricKeyType !== 'ed25519')
    throw new FerryError('KEY_INVALID', `not an ed25519 key: ${key.asymmetricKeyType}`);
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  const raw = Buffer.from(pub.export({ format: 'jwk' }).x ?? '', 'base64url');
  if (raw.length !== 32) throw new FerryError('KEY_INVALID', 'ed25519 public key is not 32 bytes');
  return raw;
}

/**
 * The TUF key of a Ferry key (the public half of a private one).
 *
 * @example
 * const key = tufKey(loadedPrivateKey); // key.keyID is the TUF key id
 */
export function tufKey(k: PublicKey | PrivateKey | KeyObject): Key {
  const keyObject = 'keyId' in k ? k.key : k;
  const json = {
    keytype: 'ed25519',
    scheme: 'ed25519',
    keyval: { public: rawPublic(keyObject).toString('hex') },
  };
  const keyID = createHash('sha256').update(canonicalize(json)).digest('hex');
  return new Key({ keyID, keyType: json.keytype, scheme: json.scheme, keyVal: json.keyval });
}

/** The TUF key id of a Ferry key (differs from its Ferry key id; see the module comment). */
export function tufKeyId(k: PublicKey | PrivateKey | KeyObject): string {
  return tufKey(k).keyID;
}

/**
 * Signs `md` (replacing its signatures, unless `append`) with those of `keys` that `role` lists,
 * and throws REPO_SIGNING_KEYS unless they reach the role's threshold: metadata a client would
 * refuse is never written.
 */
export function signRole(
  md: AnyMetadata,
  roleName: string,
  role: RoleKeys,
  keys: PrivateKey[],
  append = false,
): void {
  if (!append) md.signatures = {};
  const seen = new Set<string>();
  for (const k of keys) {
    const keyID = tufKeyId(k);
    if (!role.keyIDs.includes(keyID) || seen.has(keyID)) continue;
    seen.add(keyID);
    md.sign((data) => new Signature({ keyID, sig: sign(null, data, k.key).toString('hex') }));
  }
  if (seen.size < role.threshold)
    throw new FerryError(
      'REPO_SIGNING_KEYS',
      `${roleName} needs ${role.threshold} signatures, the keys given make ${seen.size}`,
    );
}
