/**
 * The director's online key: signs per-device assignments (protocol/director.ts) with core's
 * context-separated ed25519 signatures. The key signs nothing else, and its compromise is
 * bounded: devices still require the assignment to match TUF targets signed offline.
 */
import { createPublicKey, hkdfSync } from 'node:crypto';
import { generateKeyPair, parsePrivateKey, signPayload, type PrivateKey } from '@ferry/core';
import {
  ASSIGNMENT_CONTEXT,
  assignmentPayload,
  type Assignment,
  type DirectorKey,
  type SignedAssignment,
} from '@ferry/protocol';

/** How long an assignment stays valid: the device re-checks-in long before. */
export const ASSIGNMENT_TTL_MS = 60 * 60 * 1000;

function publicOf(key: PrivateKey): DirectorKey {
  const jwk = createPublicKey(key.key).export({ format: 'jwk' });
  return { keyId: key.keyId, publicKey: Buffer.from(jwk.x ?? '', 'base64url').toString('hex') };
}

/**
 * Signs assignments with the online key, and during a key rotation with the keys it replaces
 * as well, so devices whose image still trusts only an older key accept every assignment
 * (docs/fleet.md, "Director keys and their rotation").
 */
export class Director {
  readonly #keys: PrivateKey[];
  /** The public half devices pin (keyId and raw key in hex). */
  readonly publicKey: DirectorKey;
  /** Every key that signs, the current one first. */
  readonly publicKeys: DirectorKey[];
  /**
   * The secret device session keys are derived from (device-session.ts), itself derived from
   * the current key: every worker holding the key derives the same, a restart keeps sessions
   * valid, and a key rotation ends them (devices open new ones).
   */
  readonly sessionSecret: Buffer;

  constructor(key: PrivateKey, previous: PrivateKey[] = []) {
    this.#keys = [key, ...previous.filter((k) => k.keyId !== key.keyId)];
    this.publicKeys = this.#keys.map(publicOf);
    this.publicKey = this.publicKeys[0]!;
    const d = Buffer.from(key.key.export({ format: 'jwk' }).d ?? '', 'base64url');
    this.sessionSecret = Buffer.from(
      hkdfSync('sha256', d, 'ferry-device-session-secret-v1', key.keyId, 32),
    );
  }

  /** A director with a fresh key (tests, `ferry server` without --director-key). */
  static ephemeral(): Director {
    return new Director(parsePrivateKey(generateKeyPair().privateKeyPem));
  }

  /** Signs `a`. */
  sign(a: Assignment): SignedAssignment {
    const signatures = signPayload(ASSIGNMENT_CONTEXT, assignmentPayload(a), this.#keys);
    return { signed: a, signatures };
  }
}
