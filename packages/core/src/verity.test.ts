import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { needs } from '@ferry/testing';
import {
  VerityHasher,
  computeVerity,
  deriveVeritySalt,
  randomVeritySalt,
  verityLevelSizes,
} from './verity.ts';

const B = 4096;

/** Deterministic pseudo-random bytes (AES-CTR keystream), so a failure reproduces. */
function bytes(n: number, seed = 1): Buffer {
  const key = Buffer.alloc(16, seed);
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(n));
}

/** What veritysetup prints and writes for `data` (superblock-less format 1). */
function veritysetup(data: string, hashFile: string, salt: Buffer): string {
  const r = spawnSync(
    'veritysetup',
    [
      'format',
      '--format=1',
      '--hash=sha256',
      '--data-block-size=4096',
      '--hash-block-size=4096',
      `--salt=${salt.length === 0 ? '-' : salt.toString('hex')}`,
      '--no-superblock',
      data,
      hashFile,
    ],
    { encoding: 'utf8' },
  );
  assert.equal(r.status, 0, r.stderr);
  const m = /Root hash:\s+([0-9a-f]{64})/.exec(r.stdout);
  assert.ok(m, r.stdout);
  return m[1]!;
}

describe('computeVerity', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ferry-verity-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const salts = { 'no salt': Buffer.alloc(0), 'a 32-byte salt': bytes(32, 7) };
  for (const blocks of [1, 127, 128, 129, 16385]) {
    for (const [saltName, salt] of Object.entries(salts)) {
      describe(`when the image has ${blocks} blocks and ${saltName}`, () => {
        it(
          'gives the root hash and tree bytes veritysetup gives',
          needs('veritysetup'),
          async () => {
            const data = join(dir, `d${blocks}-${salt.length}`);
            await writeFile(data, bytes(blocks * B, blocks));
            const root = veritysetup(data, `${data}.hash`, salt);
            const v = await computeVerity(data, salt);
            assert.equal(v.rootHash, root);
            assert.ok(v.tree.equals(await readFile(`${data}.hash`)));
            assert.equal(v.treeSize, v.tree.length);
            assert.equal(v.dataBlocks, blocks);
            assert.equal(v.salt, salt.toString('hex'));
          },
        );
      });
    }
  }

  describe('when the salt has the maximum 256 bytes', () => {
    it('matches veritysetup', needs('veritysetup'), async () => {
      const data = join(dir, 'salt256');
      await writeFile(data, bytes(200 * B, 3));
      const salt = bytes(256, 9);
      const root = veritysetup(data, `${data}.hash`, salt);
      const v = await computeVerity(data, salt);
      assert.equal(v.rootHash, root);
      assert.ok(v.tree.equals(await readFile(`${data}.hash`)));
    });
  });

  describe('when the size is not a multiple of 4096', () => {
    it('hashes the image as if zero-padded to the next block', needs('veritysetup'), async () => {
      const raw = bytes(130 * B + 1000, 4);
      const data = join(dir, 'unaligned');
      const padded = join(dir, 'padded');
      await writeFile(data, raw);
      await writeFile(padded, Buffer.concat([raw, Buffer.alloc(B - 1000)]));
      const salt = bytes(32, 5);
      const root = veritysetup(padded, `${padded}.hash`, salt);
      const v = await computeVerity(data, salt);
      assert.equal(v.dataBlocks, 131);
      assert.equal(v.rootHash, root);
      assert.ok(v.tree.equals(await readFile(`${padded}.hash`)));
    });
  });

  describe('when the file does not exist', () => {
    it('fails with IO', async () => {
      await assert.rejects(computeVerity(join(dir, 'missing'), Buffer.alloc(0)), { code: 'IO' });
    });
  });
});

describe('VerityHasher', () => {
  describe('when the input is split into arbitrary pieces', () => {
    it('gives the same tree and root as one update', () => {
      const data = bytes(300 * B + 123, 11);
      const salt = bytes(19, 12);
      const whole = new VerityHasher(salt);
      whole.update(data);
      const expected = whole.finish();
      const cuts = bytes(64, 13);
      for (let round = 0; round < 8; round++) {
        const h = new VerityHasher(salt);
        let off = 0;
        for (let i = 0; off < data.length; i++) {
          // Pieces of 0 bytes, 1 byte, a few bytes and several blocks.
          const r = cuts[(i + round * 7) % cuts.length]!;
          const len = [0, 1, r, r * 97, B, B * 3 + r][(i + round) % 6]!;
          h.update(data.subarray(off, off + len));
          off += len;
        }
        const got = h.finish();
        assert.equal(got.rootHash, expected.rootHash);
        assert.ok(got.tree.equals(expected.tree));
      }
    });
  });

  describe('when a byte of the image changes', () => {
    it('changes the root hash', () => {
      const data = bytes(129 * B, 14);
      const a = new VerityHasher(Buffer.alloc(0));
      a.update(data);
      data[128 * B + 5]! ^= 1;
      const b = new VerityHasher(Buffer.alloc(0));
      b.update(data);
      assert.notEqual(a.finish().rootHash, b.finish().rootHash);
    });
  });

  describe('when the image is empty', () => {
    it('fails with VERITY_PARAMS_INVALID', () => {
      assert.throws(() => new VerityHasher(Buffer.alloc(0)).finish(), {
        code: 'VERITY_PARAMS_INVALID',
      });
    });
  });

  describe('when the salt is longer than 256 bytes', () => {
    it('fails with VERITY_PARAMS_INVALID', () => {
      assert.throws(() => new VerityHasher(Buffer.alloc(257)), { code: 'VERITY_PARAMS_INVALID' });
    });
  });

  describe('when used after finish', () => {
    it('fails with INTERNAL', () => {
      const h = new VerityHasher(Buffer.alloc(0));
      h.update(Buffer.alloc(B));
      h.finish();
      assert.throws(() => h.update(Buffer.alloc(1)), { code: 'INTERNAL' });
    });
  });
});

describe('verityLevelSizes', () => {
  describe('when counting hash blocks per level', () => {
    it('follows cryptsetup: no level for one block, one more per factor of 128', () => {
      assert.deepEqual(verityLevelSizes(1), []);
      assert.deepEqual(verityLevelSizes(2), [1]);
      assert.deepEqual(verityLevelSizes(128), [1]);
      assert.deepEqual(verityLevelSizes(129), [2, 1]);
      assert.deepEqual(verityLevelSizes(128 * 128), [128, 1]);
      assert.deepEqual(verityLevelSizes(128 * 128 + 1), [129, 2, 1]);
    });
  });
});

describe('deriveVeritySalt', () => {
  const digest = createHash('sha256').update('image').digest('hex');
  describe('when given an image digest', () => {
    it('is SHA-256 of the domain string and the digest', () => {
      const want = createHash('sha256').update(`ferry-verity-salt\0${digest}`).digest();
      assert.ok(deriveVeritySalt(digest).equals(want));
      assert.equal(deriveVeritySalt(digest).length, 32);
    });
    it('differs for another image', () => {
      const other = createHash('sha256').update('other').digest('hex');
      assert.ok(!deriveVeritySalt(digest).equals(deriveVeritySalt(other)));
    });
  });
  describe('when the digest is not 64 lowercase hex digits', () => {
    it('fails with VERITY_PARAMS_INVALID', () => {
      for (const bad of [digest.toUpperCase(), digest.slice(1), `${digest}00`, ''])
        assert.throws(() => deriveVeritySalt(bad), { code: 'VERITY_PARAMS_INVALID' });
    });
  });
});

describe('randomVeritySalt', () => {
  describe('when called twice', () => {
    it('gives two different 32-byte salts', () => {
      const a = randomVeritySalt();
      assert.equal(a.length, 32);
      assert.ok(!a.equals(randomVeritySalt()));
    });
  });
});

describe('verityLeafDigests', () => {
  describe('when an image is hashed in pieces elsewhere and joined', () => {
    it('gives the same tree and root as hashing it in one stream', async () => {
      const { randomBytes } = await import('node:crypto');
      const { VerityHasher, verityLeafDigests } = await import('./verity.ts');
      const salt = randomBytes(32);
      const data = randomBytes(3 * 1024 * 1024 + 777);
      const one = new VerityHasher(salt);
      one.update(data);
      const a = one.finish();
      const joined = new VerityHasher(salt);
      const step = 1024 * 1024;
      for (let off = 0; off < data.length; off += step)
        joined.addLeafDigests(verityLeafDigests(salt, data.subarray(off, off + step)));
      const b = joined.finish();
      assert.equal(b.rootHash, a.rootHash);
      assert.ok(b.tree.equals(a.tree));
    });
  });
});
