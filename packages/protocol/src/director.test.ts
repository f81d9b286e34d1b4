import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import {
  ASSIGNMENT_CONTEXT,
  assignmentPayload,
  verifyAssignment,
  type Assignment,
  type AssignmentContext,
} from './director.ts';
import { preAuthEncoding } from './canonical.ts';

function directorKey() {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url');
  return {
    privateKey,
    key: { keyId: createHash('sha256').update(raw).digest('hex'), publicKey: raw.toString('hex') },
  };
}

const trusted = directorKey();
const now = 1_800_000_000_000;

function assignment(over: Partial<Assignment> = {}): Assignment {
  return {
    type: 'ferry-assignment-v1',
    deviceId: 'a'.repeat(32),
    rolloutId: 'r_1',
    compatible: 'acme-widget',
    version: '1.3.0',
    manifestPath: 'channels/stable/acme-widget/1.3.0/manifest.json',
    manifestSha256: 'b'.repeat(64),
    manifestLength: 1234,
    releaseCounter: 3,
    nonce: 'n'.repeat(22),
    issuedAt: now - 1000,
    expiresAt: now + 3_600_000,
    ...over,
  };
}

function signWith(a: Assignment, k = trusted) {
  const sig = sign(
    null,
    preAuthEncoding(ASSIGNMENT_CONTEXT, assignmentPayload(a)),
    k.privateKey,
  ).toString('base64');
  return { signed: a, signatures: [{ keyid: k.key.keyId, sig }] };
}

function ctx(over: Partial<AssignmentContext> = {}): AssignmentContext {
  const a = assignment();
  return {
    directorKeys: [trusted.key],
    deviceId: a.deviceId,
    compatible: a.compatible,
    nonce: a.nonce,
    installedCounter: 2,
    now,
    target: {
      path: a.manifestPath,
      length: a.manifestLength,
      sha256: a.manifestSha256,
      custom: { compatible: a.compatible, version: a.version, releaseCounter: a.releaseCounter },
    },
    ...over,
  };
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'accepted';
  } catch (e) {
    return (e as { code: string }).code;
  }
}

describe('verifyAssignment', () => {
  describe('when the director and the TUF targets agree', () => {
    it('returns the assignment', async () => {
      assert.equal((await verifyAssignment(signWith(assignment()), ctx())).version, '1.3.0');
    });
  });
  describe('when the online key is stolen (compromise drills)', () => {
    it('refuses a release TUF does not list (arbitrary software)', async () => {
      const a = assignment({ manifestPath: 'channels/stable/acme-widget/6.6.6/manifest.json' });
      assert.equal(await code(verifyAssignment(signWith(a), ctx())), 'DEVICE_ASSIGNMENT_MISMATCH');
    });
    it('refuses other bytes under a genuine path', async () => {
      const a = assignment({ manifestSha256: 'c'.repeat(64) });
      assert.equal(await code(verifyAssignment(signWith(a), ctx())), 'DEVICE_ASSIGNMENT_MISMATCH');
    });
    it('refuses an older genuine release (rollback)', async () => {
      assert.equal(
        await code(verifyAssignment(signWith(assignment()), ctx({ installedCounter: 4 }))),
        'DEVICE_ASSIGNMENT_DOWNGRADE',
      );
    });
    it("refuses another device's assignment", async () => {
      assert.equal(
        await code(verifyAssignment(signWith(assignment()), ctx({ deviceId: 'f'.repeat(32) }))),
        'DEVICE_ASSIGNMENT_STALE',
      );
    });
    it('refuses an assignment for another compatible', async () => {
      assert.equal(
        await code(verifyAssignment(signWith(assignment()), ctx({ compatible: 'other' }))),
        'DEVICE_ASSIGNMENT_MISMATCH',
      );
    });
  });
  describe('when the assignment is replayed or expired', () => {
    it('refuses another request nonce', async () => {
      assert.equal(
        await code(verifyAssignment(signWith(assignment()), ctx({ nonce: 'm'.repeat(22) }))),
        'DEVICE_ASSIGNMENT_STALE',
      );
    });
    it('refuses it after expiry', async () => {
      assert.equal(
        await code(verifyAssignment(signWith(assignment()), ctx({ now: now + 4_000_000 }))),
        'DEVICE_ASSIGNMENT_STALE',
      );
    });
  });
  describe('when the signature is wrong', () => {
    it('refuses an untrusted key, a changed field and a malformed envelope', async () => {
      assert.equal(
        await code(verifyAssignment(signWith(assignment(), directorKey()), ctx())),
        'DEVICE_ASSIGNMENT_INVALID',
      );
      const env = signWith(assignment());
      env.signed = { ...env.signed, releaseCounter: 9 };
      assert.equal(await code(verifyAssignment(env, ctx())), 'DEVICE_ASSIGNMENT_INVALID');
      assert.equal(
        await code(verifyAssignment({ signed: {} }, ctx())),
        'DEVICE_ASSIGNMENT_INVALID',
      );
    });
  });
});
