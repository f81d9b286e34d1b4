import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { access, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { imageLikeBytes, tempDir } from '@ferry/testing';
import { openBundle } from './bundle-reader.ts';
import { FileSource } from './bundle-source.ts';
import { createBundle, treeRefOf, type CreateBundleOptions } from './bundle-writer.ts';
import { isFerryError } from './errors.ts';
import { generateKeyPair, parsePrivateKey, parsePublicKey } from './keys.ts';
import { makeKeyring } from './keyring.ts';
import { encodeTree, scanTree, treeDigest } from './tree.ts';

describe('createBundle with a tree listing', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let listingPath: string;
  let listing: Buffer;
  const pair = generateKeyPair();
  const key = parsePrivateKey(pair.privateKeyPem);
  const opts = (tree: string, out: string): CreateBundleOptions => ({
    images: [{ name: 'rootfs', path: join(dir, 'rootfs.img'), type: 'raw', tree }],
    compatible: 'test-board',
    version: '1.0.0',
    releaseCounter: 1,
    keys: [key],
    out: join(dir, out),
    created: '2026-01-01T00:00:00Z',
  });

  before(async () => {
    ({ dir, cleanup } = await tempDir('ferry-bundle-tree-'));
    await writeFile(join(dir, 'rootfs.img'), imageLikeBytes(200_000, 3));
    await mkdir(join(dir, 'root', 'etc'), { recursive: true });
    await writeFile(join(dir, 'root', 'etc', 'hostname'), 'gw\n');
    listing = encodeTree(await scanTree(join(dir, 'root'), { xattrs: false }));
    listingPath = join(dir, 'rootfs.tree');
    await writeFile(listingPath, listing);
  });
  after(() => cleanup());

  describe('when the listing is valid', () => {
    it('signs its digest, size and entry count in the manifest image', async () => {
      await createBundle(opts(listingPath, 'ok.fbd'));
      const src = new FileSource(join(dir, 'ok.fbd'));
      try {
        const b = await openBundle(src, {
          keyring: makeKeyring([parsePublicKey(pair.publicKeyPem)], 1),
        });
        assert.deepEqual(b.manifest.images.rootfs!.tree, {
          sha256: treeDigest(listing),
          size: listing.length,
          entries: 3,
        });
      } finally {
        await src.close();
      }
    });
  });

  describe('when the listing is malformed', () => {
    it('refuses it with TREE_INVALID and writes no bundle', async () => {
      const bad = join(dir, 'bad.tree');
      await writeFile(bad, listing.subarray(0, listing.length - 1));
      await assert.rejects(createBundle(opts(bad, 'bad.fbd')), (e) =>
        isFerryError(e, 'TREE_INVALID'),
      );
      await assert.rejects(access(join(dir, 'bad.fbd')), { code: 'ENOENT' });
    });
    it('refuses a listing whose line is not canonical with TREE_NOT_CANONICAL', async () => {
      const bad = join(dir, 'spaced.tree');
      const text = (await readFile(listingPath, 'utf8')).replace('"entries":3', '"entries": 3');
      await writeFile(bad, text);
      await assert.rejects(treeRefOf(bad), (e) => isFerryError(e, 'TREE_NOT_CANONICAL'));
    });
  });
});
