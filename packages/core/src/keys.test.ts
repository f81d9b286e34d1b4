import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isFerryError } from './errors.ts';
import {
  generateKeyPair,
  keyIdOf,
  loadPrivateKey,
  parsePrivateKey,
  parsePublicKey,
  writeKeyPair,
} from './keys.ts';

const invalid = (e: unknown) => isFerryError(e, 'KEY_INVALID');

function otherKeys(): { label: string; priv: string; pub: string }[] {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const x = generateKeyPairSync('x25519');
  return [
    ['RSA', rsa],
    ['EC P-256', ec],
    ['X25519', x],
  ].map(([label, kp]) => {
    const k = kp as typeof rsa;
    return {
      label: label as string,
      priv: k.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
      pub: k.publicKey.export({ type: 'spki', format: 'pem' }) as string,
    };
  });
}

describe('generateKeyPair', () => {
  describe('when a pair is generated', () => {
    it('gives PEM keys that parse to the same key id', () => {
      const kp = generateKeyPair();
      assert.match(kp.keyId, /^[0-9a-f]{64}$/);
      assert.equal(parsePrivateKey(kp.privateKeyPem).keyId, kp.keyId);
      assert.equal(parsePublicKey(kp.publicKeyPem).keyId, kp.keyId);
      assert.notEqual(generateKeyPair().keyId, kp.keyId);
    });
  });
});

describe('keyIdOf', () => {
  describe('when given an ed25519 key', () => {
    it('is the SHA-256 of the raw 32-byte public key, from either half', () => {
      const kp = generateKeyPair();
      const spki = createPublicKey(kp.publicKeyPem).export({ type: 'spki', format: 'der' });
      const raw = spki.subarray(spki.length - 32); // ed25519 SPKI = 12-byte header + raw key
      const want = createHash('sha256').update(raw).digest('hex');
      assert.equal(keyIdOf(createPublicKey(kp.publicKeyPem)), want);
      assert.equal(keyIdOf(parsePrivateKey(kp.privateKeyPem).key), want);
    });
  });
  describe('when given another key type', () => {
    it('throws KEY_INVALID', () => {
      const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      assert.throws(() => keyIdOf(ec.publicKey), invalid);
    });
  });
});

describe('parsePrivateKey and parsePublicKey', () => {
  const others = otherKeys();
  describe('when given RSA, EC or X25519 keys', () => {
    for (const o of others)
      it(`refuses ${o.label} with KEY_INVALID`, () => {
        assert.throws(() => parsePrivateKey(o.priv), invalid);
        assert.throws(() => parsePublicKey(o.pub), invalid);
      });
  });
  describe('when the halves are swapped', () => {
    it('refuses a private key as public and a public key as private', () => {
      const kp = generateKeyPair();
      assert.throws(() => parsePublicKey(kp.privateKeyPem), invalid);
      assert.throws(() => parsePrivateKey(kp.publicKeyPem), invalid);
    });
  });
  describe('when the PEM is damaged or wrapped', () => {
    it('refuses it with KEY_INVALID', () => {
      const { publicKeyPem: pub, privateKeyPem: priv } = generateKeyPair();
      for (const bad of [
        '',
        'garbage',
        pub.replace('PUBLIC KEY-----\n', 'PUBLIC KEY-----\nAAAA'),
        pub.slice(0, 40),
        `comment\n${pub}`,
        pub + pub,
        Buffer.from([0xff, 0xfe]),
      ])
        assert.throws(() => parsePublicKey(bad), invalid);
      assert.throws(() => parsePrivateKey(priv.replace('MC4CAQAw', 'MC4CAQ')), invalid);
      assert.throws(() => parsePrivateKey(priv + priv), invalid);
    });
    it('accepts surrounding whitespace and CRLF line ends', () => {
      const { keyId, publicKeyPem } = generateKeyPair();
      assert.equal(parsePublicKey(`\n ${publicKeyPem.replaceAll('\n', '\r\n')}\n`).keyId, keyId);
    });
  });
});

describe('writeKeyPair and loadPrivateKey', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ferry-keys-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  describe('when writing a new pair', () => {
    it('writes a 0600 private key that loads with the same key id', async () => {
      const r = await writeKeyPair(join(dir, 'release'));
      assert.equal((await stat(r.privatePath)).mode & 0o777, 0o600);
      assert.equal((await loadPrivateKey(r.privatePath)).keyId, r.keyId);
      assert.equal(parsePublicKey(await readFile(r.publicPath)).keyId, r.keyId);
    });
  });
  describe('when either file exists', () => {
    it('throws KEY_EXISTS and leaves the existing files alone', async () => {
      const prefix = join(dir, 'taken');
      await writeFile(`${prefix}.pub`, 'keep');
      await assert.rejects(writeKeyPair(prefix), (e) => isFerryError(e, 'KEY_EXISTS'));
      assert.equal(await readFile(`${prefix}.pub`, 'utf8'), 'keep');
      await assert.rejects(stat(`${prefix}.key`));
      const first = await writeKeyPair(join(dir, 'once'));
      const before = await readFile(first.privatePath);
      await assert.rejects(writeKeyPair(join(dir, 'once')), (e) => isFerryError(e, 'KEY_EXISTS'));
      assert.deepEqual(await readFile(first.privatePath), before);
    });
  });
  describe('when the private key file is open to group or others', () => {
    it('throws KEY_PERMISSIONS unless insecure permissions are allowed', async () => {
      const r = await writeKeyPair(join(dir, 'loose'));
      await chmod(r.privatePath, 0o640);
      await assert.rejects(loadPrivateKey(r.privatePath), (e) =>
        isFerryError(e, 'KEY_PERMISSIONS'),
      );
      const k = await loadPrivateKey(r.privatePath, { allowInsecurePermissions: true });
      assert.equal(k.keyId, r.keyId);
    });
  });
  describe('when the file is missing, not a key, or too large', () => {
    it('throws IO, KEY_INVALID and KEY_INVALID', async () => {
      await assert.rejects(loadPrivateKey(join(dir, 'nope.key')), (e) => isFerryError(e, 'IO'));
      const pubOnly = join(dir, 'pub-as-private.key');
      await writeFile(pubOnly, generateKeyPair().publicKeyPem, { mode: 0o600 });
      await assert.rejects(loadPrivateKey(pubOnly), invalid);
      const huge = join(dir, 'huge.key');
      await writeFile(huge, Buffer.alloc(100_000, 0x41), { mode: 0o600 });
      await assert.rejects(loadPrivateKey(huge), invalid);
      await assert.rejects(loadPrivateKey(dir), invalid); // a directory is not a key file
    });
  });
});
