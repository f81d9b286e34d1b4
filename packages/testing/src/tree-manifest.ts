/**
 * A release manifest that signs a tree listing, for deployment tests: the image fields a
 * deployment never reads (size, sha256, chunk index, verity) hold valid placeholders.
 */
import { treeDigest, type ImageType, type Manifest } from '@ferry/core';

/** Release fields of {@link treeManifest}; the defaults make release 1.0.0, counter 1. */
export interface TreeManifestOptions {
  compatible?: string;
  version?: string;
  counter?: number;
  type?: ImageType;
  /** False leaves the image without a signed tree (a release that cannot be deployed). */
  tree?: boolean;
}

/**
 * The manifest of a release whose `rootfs` image signs `listing` (its encoded bytes) with
 * `entries` entries.
 *
 * @example
 * const bytes = encodeTree(await scanTree(dir));
 * const m = treeManifest(bytes, parseTree(bytes).entries.length, { version: '2.0.0', counter: 2 });
 */
export function treeManifest(
  listing: Uint8Array,
  entries: number,
  o: TreeManifestOptions = {},
): Manifest {
  const zero = '0'.repeat(64);
  const tree = { sha256: treeDigest(listing), size: listing.length, entries };
  return {
    format: 1,
    compatible: o.compatible ?? 'board-x',
    version: o.version ?? '1.0.0',
    releaseCounter: o.counter ?? 1,
    created: '2026-01-01T00:00:00Z',
    images: {
      rootfs: {
        type: o.type ?? 'erofs',
        size: 4096,
        sha256: zero,
        chunkIndex: { sha256: zero, size: 1, chunks: 1 },
        verity: {
          format: 1,
          hashAlgorithm: 'sha256',
          dataBlockSize: 4096,
          hashBlockSize: 4096,
          dataBlocks: 1,
          rootHash: zero,
          salt: '',
          treeSize: 4096,
        },
        ...(o.tree === false ? {} : { tree }),
      },
    },
  };
}
