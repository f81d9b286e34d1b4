import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { canonicalBytes } from './canonical-json.ts';
import { FerryError, isFerryError, type ErrorCode } from './errors.ts';
import { generateKeyPair, parsePrivateKey, parsePublicKey, type PrivateKey } from './keys.ts';
import { makeKeyring, type Keyring } from './keyring.ts';
import type { Manifest } from './manifest.ts';
import {
  ENVELOPE_MAX_SIGNATURES,
  parseEnvelope,
  serializeEnvelope,
  signManifest,
  signPayload,
  verifyManifestEnvelope,
  verifySignatures,
  type Signature,
} from './signature.ts';

const pairs = Array.from({ length: 4 }, () => generateKeyPair());
const priv: PrivateKey[] = pairs.map((p) => parsePrivateKey(p.privateKeyPem));
const [a, b, c, stranger] = priv as [PrivateKey, PrivateKey, PrivateKey, PrivateKey];
const ring = (threshold: number): Keyring =>
  makeKeyring(
    pairs.slice(0, 3).map((p) => parsePublicKey(p.publicKeyPem)),
    threshold,
  );
const payload = Buffer.from('release bytes');
const code = (want: ErrorCode) => (e: unknown) => isFerryError(e, want);

function manifest(): Manifest {
  return {
    format: 1,
    compatible: 'acme-widget',
    version: '2.0.0',
    releaseCounter: 7,
    created: '2026-11-22T10:00:00Z',
    images: {
      rootfs: {
        type: 'erofs',
        size: 8192,
        sha256: '1'.repeat(64),
        chunkIndex: { sha256: '2'.repeat(64), size: 100, chunks: 2 },
        verity: {
          format: 1,
          hashAlgorithm: 'sha256',
          dataBlockSize: 4096,
          hashBlockSize: 4096,
          dataBlocks: 2,
          rootHash: '3'.repeat(64),
          salt: '',
          treeSize: 4096,
        },
      },
    },
    vendorNote: { keep: 'me' },
  };
}

describe('verifySignatures', () => {
  describe('when 2 of 3 trusted keys are required', () => {
    it('passes with 2 and returns their key ids', () => {
      const sigs = signPayload('manifest', payload, [a, c]);
      assert.deepEqual(
        verifySignatures('manifest', payload, sigs, ring(2)).sort(),
        [a.keyId, c.keyId].sort(),
      );
    });
    it('fails with 1 (BUNDLE_SIGNATURE_THRESHOLD)', () => {
      const sigs = signPayload('manifest', payload, [b]);
      assert.throws(
        () => verifySignatures('manifest', payload, sigs, ring(2)),
        code('BUNDLE_SIGNATURE_THRESHOLD'),
      );
    });
    it('counts a key id listed twice once', () => {
      const [s] = signPayload('manifest', payload, [a]);
      assert.throws(
        () => verifySignatures('manifest', payload, [s!, s!], ring(2)),
        code('BUNDLE_SIGNATURE_THRESHOLD'),
      );
      assert.equal(signPayload('manifest', payload, [a, a]).length, 1);
    });
    it('passes with an extra unknown signer and an extra bad signature once met', () => {
      const sigs = signPayload('manifest', payload, [stranger, a, b]);
      sigs.push({ keyid: c.keyId, sig: sigs[1]!.sig });
      assert.equal(verifySignatures('manifest', payload, sigs, ring(2)).length, 2);
    });
  });
  describe('when no signature is from a trusted key', () => {
    it('throws BUNDLE_UNKNOWN_SIGNER', () => {
      const sigs = signPayload('manifest', payload, [stranger]);
      assert.throws(
        () => verifySignatures('manifest', payload, sigs, ring(1)),
        code('BUNDLE_UNKNOWN_SIGNER'),
      );
    });
  });
  describe('when there are no signatures', () => {
    it('throws BUNDLE_UNSIGNED', () =>
      assert.throws(
        () => verifySignatures('manifest', payload, [], ring(1)),
        code('BUNDLE_UNSIGNED'),
      ));
  });
  describe('when a signature was made over another payload', () => {
    it('throws BUNDLE_SIGNATURE_INVALID', () => {
      const sigs = signPayload('manifest', Buffer.from('other release'), [a]);
      assert.throws(
        () => verifySignatures('manifest', payload, sigs, ring(1)),
        code('BUNDLE_SIGNATURE_INVALID'),
      );
    });
    it('reports INVALID before THRESHOLD', () => {
      const sigs = [
        ...signPayload('manifest', payload, [a]),
        ...signPayload('manifest', Buffer.from('x'), [b]),
      ];
      assert.throws(
        () => verifySignatures('manifest', payload, sigs, ring(2)),
        code('BUNDLE_SIGNATURE_INVALID'),
      );
    });
  });
  describe('when a signature was made for another context', () => {
    it('does not verify', () => {
      const sigs = signPayload('chunk-index', payload, [a]);
      assert.throws(
        () => verifySignatures('manifest', payload, sigs, ring(1)),
        code('BUNDLE_SIGNATURE_INVALID'),
      );
      assert.deepEqual(verifySignatures('chunk-index', payload, sigs, ring(1)), [a.keyId]);
    });
    it('cannot be shifted between context and payload', () => {
      // "manifest 5\n" + "ab..." must not equal any other split of the same bytes.
      const sigs = signPayload('a', Buffer.from('b 1\nc'), [a]);
      assert.throws(
        () => verifySignatures('a-b', Buffer.from('1\nc'), sigs, ring(1)),
        code('BUNDLE_SIGNATURE_INVALID'),
      );
    });
  });
  describe('when signature entries are malformed', () => {
    const good = signPayload('manifest', payload, [a])[0]!;
    const entries: unknown[] = [
      null,
      'sig',
      {},
      { keyid: a.keyId },
      { keyid: a.keyId, sig: 'not base64!' },
      { keyid: a.keyId, sig: good.sig.slice(0, 44) },
      { keyid: a.keyId, sig: good.sig.replace('==', 'A=') },
      { keyid: a.keyId.toUpperCase(), sig: good.sig },
      { keyid: 42, sig: good.sig },
    ];
    for (const entry of entries)
      it(`counts ${JSON.stringify(entry)?.slice(0, 40)} as invalid`, () =>
        assert.throws(
          () => verifySignatures('manifest', payload, [entry as Signature], ring(1)),
          code('BUNDLE_SIGNATURE_INVALID'),
        ));
  });
  describe('when the keyring threshold is below 1', () => {
    it('throws KEYRING_INVALID rather than accepting nothing', () => {
      const kr = { ...ring(1), threshold: 0 };
      assert.throws(() => verifySignatures('manifest', payload, [], kr), code('KEYRING_INVALID'));
    });
  });
});

describe('signManifest and verifyManifestEnvelope', () => {
  describe('when the envelope goes through bytes and back', () => {
    it('verifies and returns the manifest with its unknown fields', () => {
      const bytes = serializeEnvelope(signManifest(manifest(), [a, b]));
      const { manifest: m, keyIds } = verifyManifestEnvelope(parseEnvelope(bytes), ring(2));
      assert.deepEqual(m, manifest());
      assert.equal(keyIds.length, 2);
      assert.match(bytes.toString(), /^\{"signatures":\[\{"keyid":"[0-9a-f]{64}","sig":"/);
    });
  });
  describe('when an unknown field is changed after signing', () => {
    it('throws BUNDLE_SIGNATURE_INVALID', () => {
      const env = signManifest(manifest(), [a]);
      (env.signed.vendorNote as Record<string, string>).keep = 'changed';
      assert.throws(() => verifyManifestEnvelope(env, ring(1)), code('BUNDLE_SIGNATURE_INVALID'));
    });
  });
  describe('when a signed document is not a valid manifest', () => {
    it('verifies signatures first, then throws MANIFEST_SCHEMA', () => {
      const signed = { format: 1, hello: 'world' };
      const env = { signed, signatures: signPayload('manifest', canonicalBytes(signed), [a]) };
      assert.throws(() => verifyManifestEnvelope(env, ring(1)), code('MANIFEST_SCHEMA'));
      assert.throws(
        () => verifyManifestEnvelope({ ...env, signatures: [] }, ring(1)),
        code('BUNDLE_UNSIGNED'),
      );
    });
  });
});

describe('parseEnvelope', () => {
  const valid = serializeEnvelope(signManifest(manifest(), [a]));
  const asBytes = (v: unknown) => canonicalBytes(v);
  describe('when the shape is wrong', () => {
    const sig = { keyid: a.keyId, sig: 'x' };
    const cases: unknown[] = [
      [],
      { signed: manifest() },
      { signatures: [] },
      { signed: [], signatures: [] },
      { signed: manifest(), signatures: {} },
      { signed: manifest(), signatures: [sig], extra: 1 },
      { signed: manifest(), signatures: [{ ...sig, note: 'x' }] },
      { signed: manifest(), signatures: [{ keyid: 1, sig: 'x' }] },
      {
        signed: manifest(),
        signatures: Array.from({ length: ENVELOPE_MAX_SIGNATURES + 1 }, () => sig),
      },
    ];
    for (const v of cases)
      it(`throws MANIFEST_SCHEMA for ${JSON.stringify(v).slice(0, 50)}`, () =>
        assert.throws(() => parseEnvelope(asBytes(v)), code('MANIFEST_SCHEMA')));
  });
  describe('when the bytes are not canonical', () => {
    it('throws JSON_NOT_CANONICAL', () => {
      const pretty = Buffer.from(JSON.stringify(JSON.parse(valid.toString()), null, 1));
      assert.throws(() => parseEnvelope(pretty), code('JSON_NOT_CANONICAL'));
    });
  });
  describe('when given arbitrary input (property)', () => {
    const CODES = new Set([
      'JSON_MALFORMED',
      'JSON_NOT_CANONICAL',
      'MANIFEST_TOO_LARGE',
      'MANIFEST_TOO_DEEP',
      'MANIFEST_SCHEMA',
      'MANIFEST_FORMAT_VERSION',
      'BUNDLE_UNSIGNED',
      'BUNDLE_UNKNOWN_SIGNER',
      'BUNDLE_SIGNATURE_INVALID',
      'BUNDLE_SIGNATURE_THRESHOLD',
    ]);
    const onlyDocumented = (input: Uint8Array): void => {
      try {
        verifyManifestEnvelope(parseEnvelope(input), ring(1));
      } catch (e) {
        if (!(e instanceof FerryError) || !CODES.has(e.code)) throw e;
      }
    };
    it('returns or throws a documented code for any byte string or JSON value', () => {
      fc.assert(fc.property(fc.uint8Array({ maxLength: 512 }), onlyDocumented), { numRuns: 2000 });
      fc.assert(
        fc.property(fc.jsonValue(), (v) => onlyDocumented(canonicalBytes(v))),
        { numRuns: 1000 },
      );
      const entry = fc.record({
        keyid: fc.oneof(fc.string(), fc.constant(a.keyId)),
        sig: fc.string(),
      });
      const env = fc.record({
        signed: fc.oneof(
          fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 3 })),
          fc.constant(manifest()),
        ),
        signatures: fc.array(entry),
      });
      fc.assert(
        fc.property(env, (v) => onlyDocumented(canonicalBytes(v))),
        { numRuns: 500 },
      );
    });
    it('never verifies a byte-mutated envelope', () => {
      const arb = fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 1, max: 255 }));
      fc.assert(
        fc.property(arb, ([i, x]) => {
          const m = Buffer.from(valid);
          m[i] = m[i]! ^ x;
          assert.throws(() => verifyManifestEnvelope(parseEnvelope(m), ring(1)), FerryError);
        }),
        { numRuns: 1000 },
      );
    });
  });
});
