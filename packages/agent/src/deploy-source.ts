/**
 * Where a deployment's tree comes from: the listing a release manifest signs (its digest, size
 * and entry count under `images.<name>.tree`) and the file objects it names. Sources are
 * untrusted: the listing is checked against the signed digest before it is parsed, each object
 * against its id while the store writes it (deploy-objects.ts).
 */
import { encodeTree, FerryError, scanTree, type Manifest, type TreeEntry } from '@ferry/core';
import { DirectoryObjectSource, type ObjectSource } from './deploy-objects.ts';

/** The tree a manifest signs for one image: `images.<name>.tree`. */
export interface SignedTree {
  /** Hex SHA-256 of the listing bytes (the tree digest). */
  sha256: string;
  /** Bytes of the listing. */
  size: number;
  /** Entries of the listing. */
  entries: number;
}

/**
 * A release's tree as a deployment source: the listing bytes, then the objects.
 *
 * @example
 * const src = new DirectoryTreeSource('/mnt/release-image');
 * await deployRelease({ store, manifest, image: 'rootfs', source: src, ... });
 */
export interface TreeSource {
  /** The listing bytes of `tree` (untrusted: the caller checks them against `tree`). */
  listing(tree: SignedTree): Promise<Buffer>;
  /** The file objects of the listing. */
  readonly objects: ObjectSource;
  /** Optional hint: the objects about to be opened, in order, so a network source fetches ahead. */
  willOpen?(objects: [string, TreeEntry][]): void;
  /** Releases connections or handles. */
  close?(): void;
}

const HEX64 = /^[0-9a-f]{64}$/;
const isCount = (v: unknown): v is number =>
  typeof v === 'number' && Number.isSafeInteger(v) && v > 0;

/**
 * The tree `manifest` signs for `image`, schema-checked (the manifest type may not declare the
 * field yet, so it is read as unknown). DEPLOY_TREE_UNSIGNED when there is no such image or it
 * carries no tree; MANIFEST_SCHEMA when the field is malformed.
 */
export function signedTree(manifest: Manifest, image: string): SignedTree {
  const img = Object.hasOwn(manifest.images, image) ? manifest.images[image] : undefined;
  const t = (img as { tree?: unknown } | undefined)?.tree;
  if (t === undefined)
    throw new FerryError(
      'DEPLOY_TREE_UNSIGNED',
      `release ${manifest.version} signs no tree for image ${JSON.stringify(image.slice(0, 64))}`,
    );
  const o = t as Record<string, unknown>;
  if (
    typeof t !== 'object' ||
    t === null ||
    typeof o.sha256 !== 'string' ||
    !HEX64.test(o.sha256) ||
    !isCount(o.size) ||
    !isCount(o.entries)
  )
    throw new FerryError(
      'MANIFEST_SCHEMA',
      `images.${image}.tree: expected {sha256, size, entries}`,
    );
  return { sha256: o.sha256, size: o.size, entries: o.entries };
}

/**
 * The image of `manifest` to deploy: `wanted` if given, else the only image that signs a tree,
 * else `rootfs`. DEPLOY_TREE_UNSIGNED if that image signs no tree.
 */
export function treeImage(manifest: Manifest, wanted?: string): string {
  if (wanted !== undefined) return wanted;
  const withTree = Object.entries(manifest.images)
    .filter(([, img]) => (img as { tree?: unknown }).tree !== undefined)
    .map(([name]) => name);
  return withTree.length === 1 ? withTree[0]! : 'rootfs';
}

/**
 * A tree on disk as a source: a read-only mount of a release's image, a staging dir. The
 * listing is a scan of the directory (lstat only, nothing followed); objects are read through
 * directory fds with O_NOFOLLOW. A tree that differs from the signed one fails the digest check.
 */
export class DirectoryTreeSource implements TreeSource {
  readonly dir: string;
  #inner: DirectoryObjectSource | undefined;
  readonly objects: ObjectSource = {
    open: (id, entry) => {
      if (!this.#inner) throw new FerryError('INTERNAL', 'objects opened before the listing');
      return this.#inner.open(id, entry);
    },
  };

  constructor(dir: string) {
    this.dir = dir;
  }

  async listing(): Promise<Buffer> {
    const listing = await scanTree(this.dir);
    this.#inner = new DirectoryObjectSource(this.dir, listing);
    return encodeTree(listing);
  }
}
