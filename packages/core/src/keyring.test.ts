import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isFerryError } from './errors.ts';
import { generateKeyPair, parsePublicKey } from './keys.ts';
import { loadKeyring, makeKeyring } from './keyring.ts';

const bad = (e: unknown) => isFerryError(e, 'KEYRING_INVALID');
const pairs = Array.from({ length: 3 }, () => generateKeyPair());
const pems = pairs.map((p) => p.publicKeyPem);
const ids = pairs.map((p) => p.keyId);

describe('loadKeyring', () => {
  let dir = '';
  let n = 0;
  const file = async (content: string | Buffer): Promise<string> => {
    const p = join(dir, `f${n++}`);
    await writeFile(p, content);
    return p;
  };
  const keyDir = async (files: Record<string, string>): Promise<string> => {
    const d = join(dir, `d${n++}`);
    await mkdir(d);
    for (const [name, content] of Object.entries(files)) await writeFile(join(d, name), content);
    return d;
  };
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ferry-keyring-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  describe('when given a PEM public key file', () => {
    it('trusts that key with threshold 1', async () => {
      const kr = await loadKeyring(await file(pems[0]!));
      assert.equal(kr.threshold, 1);
      assert.deepEqual([...kr.keys.keys()], [ids[0]]);
    });
    it('refuses a private key or a non-ed25519 key', async () => {
      await assert.rejects(loadKeyring(await file(generateKeyPair().privateKeyPem)), bad);
      const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
      await assert.rejects(
        loadKeyring(await file(ec.export({ type: 'spki', format: 'pem' }))),
        bad,
      );
    });
  });

  describe('when given a JSON keyring file', () => {
    it('loads the keys and the threshold', async () => {
      const kr = await loadKeyring(await file(JSON.stringify({ threshold: 2, keys: pems })));
      assert.equal(kr.threshold, 2);
      assert.deepEqual([...kr.keys.keys()].sort(), [...ids].sort());
    });
    const malformed: [string, string][] = [
      ['not JSON', '{threshold: 1}'],
      ['an array', JSON.stringify(pems)],
      ['threshold 0', JSON.stringify({ threshold: 0, keys: pems })],
      ['threshold above the key count', JSON.stringify({ threshold: 4, keys: pems })],
      ['a fractional threshold', JSON.stringify({ threshold: 1.5, keys: pems })],
      ['a string threshold', JSON.stringify({ threshold: '1', keys: pems })],
      ['a missing threshold', JSON.stringify({ keys: pems })],
      ['no keys', JSON.stringify({ threshold: 1, keys: [] })],
      ['keys not an array', JSON.stringify({ threshold: 1, keys: pems[0] })],
      ['a non-string key', JSON.stringify({ threshold: 1, keys: [1] })],
      [
        'a bad PEM',
        JSON.stringify({
          threshold: 1,
          keys: ['-----BEGIN PUBLIC KEY-----\nAA==\n-----END PUBLIC KEY-----'],
        }),
      ],
      ['a duplicate key', JSON.stringify({ threshold: 1, keys: [pems[0], pems[1], pems[0]] })],
      ['an unknown field', JSON.stringify({ threshold: 1, keys: pems, trust: 'all' })],
      ['a duplicate field', `{"threshold":1,"threshold":3,"keys":${JSON.stringify(pems)}}`],
    ];
    for (const [what, content] of malformed)
      it(`throws KEYRING_INVALID for ${what}`, async () => {
        await assert.rejects(loadKeyring(await file(content)), bad);
      });
  });

  describe('when given a directory', () => {
    it('loads every *.pub file and the threshold file', async () => {
      const d = await keyDir({
        'a.pub': pems[0]!,
        'b.pub': pems[1]!,
        'c.pub': pems[2]!,
        threshold: '2\n',
        README: 'x',
      });
      const kr = await loadKeyring(d);
      assert.equal(kr.threshold, 2);
      assert.equal(kr.keys.size, 3);
    });
    it('defaults the threshold to 1', async () => {
      assert.equal((await loadKeyring(await keyDir({ 'a.pub': pems[0]! }))).threshold, 1);
    });
    const malformed: [string, Record<string, string>][] = [
      ['no keys', { threshold: '1' }],
      ['a bad key file', { 'a.pub': pems[0]!, 'b.pub': 'junk' }],
      ['a duplicate key', { 'a.pub': pems[0]!, 'b.pub': pems[0]! }],
      ['threshold 0', { 'a.pub': pems[0]!, threshold: '0' }],
      ['threshold above the key count', { 'a.pub': pems[0]!, threshold: '2' }],
      ['a non-integer threshold', { 'a.pub': pems[0]!, threshold: 'two' }],
      ['a negative threshold', { 'a.pub': pems[0]!, threshold: '-1' }],
    ];
    for (const [what, files] of malformed)
      it(`throws KEYRING_INVALID for ${what}`, async () => {
        await assert.rejects(loadKeyring(await keyDir(files)), bad);
      });
  });

  describe('when the path does not exist', () => {
    it('throws IO', async () => {
      await assert.rejects(loadKeyring(join(dir, 'missing')), (e) => isFerryError(e, 'IO'));
    });
  });
});

describe('makeKeyring', () => {
  describe('when the threshold is not an integer in 1..keys', () => {
    it('throws KEYRING_INVALID', () => {
      const keys = pems.map((p) => parsePublicKey(p));
      for (const t of [0, -1, 4, NaN, 1.5]) assert.throws(() => makeKeyring(keys, t), bad);
      assert.equal(makeKeyring(keys, 3).threshold, 3);
    });
  });
});
