/**
 * The director keys a device trusts, from a keyring in the image ([server] director-keyring,
 * the same format as the bundle keyring: a PEM file or a directory of them). Rotating the
 * director key is a release: ship both keys, let the server sign with both, then drop the old
 * one (docs/fleet.md).
 */
import { loadKeyring } from '@ferry/core';
import type { DirectorKey } from '@ferry/protocol';

/** Every key of the keyring at `path` as protocol's DirectorKey (raw ed25519 key in hex). */
export async function directorKeys(path: string): Promise<DirectorKey[]> {
  const ring = await loadKeyring(path);
  return [...ring.keys.values()].map((k) => {
    const jwk = k.key.export({ format: 'jwk' });
    return { keyId: k.keyId, publicKey: Buffer.from(jwk.x ?? '', 'base64url').toString('hex') };
  });
}
