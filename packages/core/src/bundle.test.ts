import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { imageLikeBytes, tempDir } from '@ferry/testing';
import { BUNDLE_HEADER_SIZE, decodeHeader, encodeBundleHead } from './bundle-format.ts';
import { openBundle, verifyBundle } from './bundle-reader.ts';
import { FileSource } from './bundle-source.ts';

/** Runs fn on a FileSource for path and closes it. */
async function onFile<T>(path: string, fn: (s: FileSource) => Promise<T>): Promise<T> {
  const s = new FileSource(path);
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}
import { createBundle, type CreateBundleOptions } from './bundle-writer.ts';
import { canonicalBytes } from './canonical-json.ts';
import { isFerryError, type ErrorCode } from './errors.ts';
import { generateKeyPair, parsePrivateKey, parsePublicKey, type PrivateKey } from './keys.ts';
import type { Keyring } from './keyring.ts';
import { signPayload } from './signature.ts';

let dir: string;
let cleanup: () => Promise<void>;
let keys: PrivateKey[];
let ring1: Keyring; // trusts key 0, threshold 1
let image: string;
let bundle: string;
let bytes: Buffer;

function keyring(threshold: number, ...idx: number[]): Keyring {
  const all = idx.map((i) => keys[i]!);
  return {
    threshold,
    keys: new Map(all.map((k) => [k.keyId, parsePublicKey(pubPems[keys.indexOf(k)]!)])),
  };
}
const pubPems: string[] = [];

function opts(over: Partial<CreateBundleOptions> = {}): CreateBundleOptions {
  return {
    images: [{ name: 'rootfs', path: image }],
    compatible: 'test-board',
    version: '1.0.0',
    releaseCounter: 7,
    keys: [keys[0]!],
    out: bundle,
    created: '2026-01-01T00:00:00Z',
    ...over,
  };
}

/** Verifies a bundle held in memory; resolves to the error code, or 'OK'. */
async function verdict(data: Buffer, ring: Keyring = ring1): Promise<ErrorCode | 'OK'> {
  const p = join(dir, `case-${Math.random().toString(36).slice(2)}.fbd`);
  await writeFile(p, data);
  const src = new FileSource(p);
  try {
    await verifyBundle(src, ring);
    return 'OK';
  } catch (e) {
    if (isFerryError(e)) return e.code;
    throw e;
  } finally {
    await src.close();
  }
}

/** Re-assembles a bundle around a replacement envelope, fixing the header's offsets. */
function withEnvelope(data: Buffer, envelope: Buffer): Buffer {
  const h = decodeHeader(data.subarray(0, BUNDLE_HEADER_SIZE), data.length);
  const index = data.subarray(
    BUNDLE_HEADER_SIZE + h.envelopeLength,
    BUNDLE_HEADER_SIZE + h.envelopeLength + h.indexLength,
  );
  const payload = data.subarray(h.payloadOffset);
  const head = encodeBundleHead(envelope, Buffer.from(index), payload.length);
  return Buffer.concat([head, payload]);
}

function envelopeOf(data: Buffer): {
  signed: Record<string, unknown>;
  signatures: Array<{ keyid: string; sig: string }>;
} {
  const h = decodeHeader(data.subarray(0, BUNDLE_HEADER_SIZE), data.length);
  return JSON.parse(
    data.subarray(BUNDLE_HEADER_SIZE, BUNDLE_HEADER_SIZE + h.envelopeLength).toString('utf8'),
  ) as ReturnType<typeof envelopeOf>;
}

/** Signs arbitrary (possibly invalid) manifest JSON with key 0. */
function signed(manifest: unknown, signer = keys[0]!): Buffer {
  const payload = canonicalBytes(manifest);
  return canonicalBytes({
    signed: manifest,
    signatures: signPayload('manifest', payload, [signer]),
  });
}

before(async () => {
  ({ dir, cleanup } = await tempDir('ferry-bundle-'));
  keys = [];
  for (let i = 0; i < 3; i++) {
    const kp = generateKeyPair();
    keys.push(parsePrivateKey(kp.privateKeyPem));
    pubPems.push(kp.publicKeyPem);
  }
  ring1 = keyring(1, 0);
  image = join(dir, 'rootfs.img');
  // 1.5 MiB + 100 bytes: not a multiple of 4 KiB, so the verity padding rule is exercised too.
  await writeFile(image, imageLikeBytes(1536 * 1024 + 100, 1));
  bundle = join(dir, 'good.fbd');
  await createBundle(opts());
  bytes = await readFile(bundle);
});
after(() => cleanup());

describe('bundle', () => {
  describe('when created and verified', () => {
    it('verifies with the signing key and reports the image', async () => {
      const r = await onFile(bundle, (s) => verifyBundle(s, ring1));
      assert.deepEqual(r.keyIds, [keys[0]!.keyId]);
      assert.equal(r.images.length, 1);
      assert.equal(r.images[0]!.size, 1536 * 1024 + 100);
      assert.equal(r.manifest.releaseCounter, 7);
    });
    it('is byte-identical when created again from the same input', async () => {
      const again = join(dir, 'again.fbd');
      await createBundle(opts({ out: again }));
      assert.ok((await readFile(again)).equals(bytes));
    });
    it('stores a repeated region once', async () => {
      const b = await onFile(bundle, (s) => openBundle(s));
      const chunks = b.images.get('rootfs')!.index.chunks.length;
      assert.ok(b.payload.size < chunks, `${b.payload.size} distinct of ${chunks}`);
    });
    it('keeps two images that share chunks apart', async () => {
      const out = join(dir, 'two.fbd');
      await createBundle(
        opts({
          out,
          images: [
            { name: 'rootfs', path: image },
            { name: 'app', path: image },
          ],
        }),
      );
      const r = await onFile(out, (s) => verifyBundle(s, ring1));
      assert.deepEqual(
        r.images.map((i) => i.name),
        ['app', 'rootfs'],
      );
    });
    it('reads the manifest without reading the payload', async () => {
      const src = new FileSource(bundle);
      const b = await openBundle(src);
      await src.close();
      assert.equal(b.manifest.version, '1.0.0');
      assert.ok(src.bytesRead <= b.header.payloadOffset, `${src.bytesRead} bytes read`);
    });
  });

  describe('when bytes are flipped', () => {
    it('refuses a flip at every 4 KiB step and in every header byte', async () => {
      const offsets = new Set<number>();
      for (let i = 0; i < BUNDLE_HEADER_SIZE; i++) offsets.add(i);
      for (let i = 0; i < bytes.length; i += 4096) offsets.add(i + 17 < bytes.length ? i + 17 : i);
      offsets.add(bytes.length - 1);
      const accepted: number[] = [];
      for (const off of offsets) {
        const copy = Buffer.from(bytes);
        copy[off]! ^= 0x10;
        if ((await verdict(copy)) === 'OK') accepted.push(off);
      }
      assert.deepEqual(accepted, [], `flips accepted at ${accepted.join(', ')}`);
      assert.ok(offsets.size > 300);
    });
    it('names the chunk when a payload byte is flipped', async () => {
      const h = decodeHeader(bytes.subarray(0, BUNDLE_HEADER_SIZE), bytes.length);
      const copy = Buffer.from(bytes);
      copy[h.payloadOffset + 5000]! ^= 0x01;
      assert.ok(['CHUNK_HASH_MISMATCH', 'CHUNK_CORRUPT'].includes(await verdict(copy)));
    });
    it('refuses a non-zero padding byte with BUNDLE_LAYOUT', async () => {
      const h = decodeHeader(bytes.subarray(0, BUNDLE_HEADER_SIZE), bytes.length);
      const copy = Buffer.from(bytes);
      copy[h.payloadOffset - 1] = 1;
      assert.equal(await verdict(copy), 'BUNDLE_LAYOUT');
    });
  });

  describe('when truncated or extended', () => {
    it('refuses truncation at every offset tried with BUNDLE_TRUNCATED', async () => {
      const h = decodeHeader(bytes.subarray(0, BUNDLE_HEADER_SIZE), bytes.length);
      const cuts = [
        0,
        1,
        7,
        8,
        9,
        63,
        64,
        65,
        200,
        h.payloadOffset - 1,
        h.payloadOffset,
        h.payloadOffset + 1,
        bytes.length - 1,
      ];
      for (let c = 4096; c < bytes.length; c += 65536) cuts.push(c);
      for (const cut of cuts)
        assert.equal(await verdict(bytes.subarray(0, cut)), 'BUNDLE_TRUNCATED', `cut at ${cut}`);
    });
    it('refuses appended bytes with BUNDLE_TRAILING_DATA', async () => {
      assert.equal(await verdict(Buffer.concat([bytes, Buffer.from([0])])), 'BUNDLE_TRAILING_DATA');
      assert.equal(
        await verdict(Buffer.concat([bytes, Buffer.alloc(8192, 7)])),
        'BUNDLE_TRAILING_DATA',
      );
    });
  });

  describe('when signatures are wrong', () => {
    it('refuses an unknown signer', async () => {
      assert.equal(await verdict(bytes, keyring(1, 1)), 'BUNDLE_UNKNOWN_SIGNER');
    });
    it('refuses a bundle below the threshold', async () => {
      assert.equal(await verdict(bytes, keyring(2, 0, 1)), 'BUNDLE_SIGNATURE_THRESHOLD');
    });
    it('accepts the threshold met by distinct keys, not by one key twice', async () => {
      const out = join(dir, 'two-sigs.fbd');
      await createBundle(opts({ out, keys: [keys[0]!, keys[1]!] }));
      const two = await readFile(out);
      assert.equal(await verdict(two, keyring(2, 0, 1, 2)), 'OK');
      const env = envelopeOf(two);
      env.signatures = [env.signatures[0]!, env.signatures[0]!];
      assert.equal(
        await verdict(withEnvelope(two, canonicalBytes(env)), keyring(2, 0, 1, 2)),
        'BUNDLE_SIGNATURE_THRESHOLD',
      );
    });
    it('refuses a signature copied from another bundle', async () => {
      const other = join(dir, 'other.fbd');
      await createBundle(opts({ out: other, version: '1.0.1', releaseCounter: 8 }));
      const env = envelopeOf(bytes);
      env.signatures = envelopeOf(await readFile(other)).signatures;
      assert.equal(
        await verdict(withEnvelope(bytes, canonicalBytes(env))),
        'BUNDLE_SIGNATURE_INVALID',
      );
    });
    it('refuses an unsigned bundle', async () => {
      const env = envelopeOf(bytes);
      env.signatures = [];
      assert.equal(await verdict(withEnvelope(bytes, canonicalBytes(env))), 'BUNDLE_UNSIGNED');
    });
  });

  describe('when the manifest is hostile', () => {
    it('refuses an oversized manifest before reading it', async () => {
      const env = envelopeOf(bytes);
      env.signed.padding = 'x'.repeat(3 * 1024 * 1024);
      assert.equal(await verdict(withEnvelope(bytes, canonicalBytes(env))), 'MANIFEST_TOO_LARGE');
    });
    it('refuses a deeply nested manifest without overflowing the stack', async () => {
      const deep = Buffer.from(
        `{"signatures":[],"signed":${'['.repeat(50000)}${']'.repeat(50000)}}`,
      );
      assert.equal(await verdict(withEnvelope(bytes, deep)), 'MANIFEST_TOO_DEEP');
    });
    it('refuses malformed JSON', async () => {
      assert.equal(
        await verdict(withEnvelope(bytes, Buffer.from('{"signatures":[],"signed":{'))),
        'JSON_MALFORMED',
      );
    });
    it('refuses an unknown manifest format version even when correctly signed', async () => {
      const env = envelopeOf(bytes);
      assert.equal(
        await verdict(withEnvelope(bytes, signed({ ...env.signed, format: 2 }))),
        'MANIFEST_FORMAT_VERSION',
      );
    });
    it('refuses a signed manifest that breaks the schema', async () => {
      const env = envelopeOf(bytes);
      assert.equal(
        await verdict(withEnvelope(bytes, signed({ ...env.signed, releaseCounter: -1 }))),
        'MANIFEST_SCHEMA',
      );
    });
    it('refuses an unknown bundle format version', async () => {
      const copy = Buffer.from(bytes);
      copy.writeUInt32LE(2, 8);
      assert.equal(await verdict(copy), 'BUNDLE_FORMAT_VERSION');
    });
    it('refuses a file that is not a bundle', async () => {
      assert.equal(
        await verdict(Buffer.from('hsqs not a bundle at all, just some bytes')),
        'BUNDLE_MAGIC',
      );
    });
  });

  describe('when the index section is hostile', () => {
    it('refuses a payload table entry pointing past the payload', async () => {
      const h = decodeHeader(bytes.subarray(0, BUNDLE_HEADER_SIZE), bytes.length);
      const copy = Buffer.from(bytes);
      const lastLen = BUNDLE_HEADER_SIZE + h.envelopeLength + h.indexLength - 4;
      copy.writeUInt32LE(copy.readUInt32LE(lastLen) + 1_000_000, lastLen);
      assert.equal(await verdict(copy), 'BUNDLE_LAYOUT');
    });
    it('refuses a chunk index swapped in from another release', async () => {
      // Same length (same image size and chunk count) but a different image: digest differs.
      const otherImage = join(dir, 'other.img');
      const data = imageLikeBytes(1536 * 1024 + 100, 1);
      data[0]! ^= 1;
      await writeFile(otherImage, data);
      const out = join(dir, 'other-image.fbd');
      await createBundle(opts({ out, images: [{ name: 'rootfs', path: otherImage }] }));
      const other = await readFile(out);
      const h = decodeHeader(bytes.subarray(0, BUNDLE_HEADER_SIZE), bytes.length);
      const ho = decodeHeader(other.subarray(0, BUNDLE_HEADER_SIZE), other.length);
      const idx = bytes.subarray(
        BUNDLE_HEADER_SIZE + h.envelopeLength,
        BUNDLE_HEADER_SIZE + h.envelopeLength + h.indexLength,
      );
      const oidx = other.subarray(
        BUNDLE_HEADER_SIZE + ho.envelopeLength,
        BUNDLE_HEADER_SIZE + ho.envelopeLength + ho.indexLength,
      );
      const copy = Buffer.from(bytes);
      // Splice the other chunk index over ours (name "rootfs" and lengths are the same).
      const recordEnd = 4 + 1 + 6 + 8 + Number(oidx.readBigUInt64LE(4 + 1 + 6));
      assert.equal(recordEnd, 4 + 1 + 6 + 8 + Number(idx.readBigUInt64LE(4 + 1 + 6)));
      oidx.subarray(4, recordEnd).copy(copy, BUNDLE_HEADER_SIZE + h.envelopeLength + 4);
      assert.notDeepEqual(
        idx,
        copy.subarray(
          BUNDLE_HEADER_SIZE + h.envelopeLength,
          BUNDLE_HEADER_SIZE + h.envelopeLength + h.indexLength,
        ),
      );
      assert.equal(await verdict(copy), 'CHUNK_INDEX_MISMATCH');
    });
  });
});
