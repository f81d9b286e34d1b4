/**
 * Installing a release as a deployment: the signed tree's listing, the objects the store
 * lacks, a checkout, its verification, its /etc, and last the switch of the default deployment,
 * the commit point. A failure or power cut before it leaves the old default in place.
 * Layout and rules: docs/deployments.md, "Installing a release as a deployment".
 */
import {
  FerryError,
  parseTree,
  treeDigest,
  type Manifest,
  type TreeEntry,
  type TreeListing,
} from '@ferry/core';
import type { DeployBoot } from './deploy-bootloader.ts';
import type { CheckoutMode } from './deploy-checkout.ts';
import { makeEtc, removeStaleEtc, type EtcResult } from './deploy-etc.ts';
import { objectEntries, type ObjectSource } from './deploy-objects.ts';
import type { SpaceNeeds } from './deploy-space.ts';
import type { DeploymentRelease } from './deploy-state.ts';
import type { DeploymentInfo, DeployStore, GcResult } from './deploy-store.ts';
import { signedTree, type SignedTree, type TreeSource } from './deploy-source.ts';
import { faultPoint } from './fault.ts';
import type { EtcMergeReport } from './etc-merge.ts';

/** Lifecycle events of {@link deployRelease}, keyed by `id`. */
export type DeployEvent =
  | { id: 'deploy.started'; version: string; counter: number; image: string; tree: string }
  | { id: 'deploy.planned'; objects: number; bytes: number; neededBytes: number }
  | { id: 'deploy.progress'; done: number; total: number; bytes: number; totalBytes: number }
  | { id: 'deploy.checked-out'; deployment: string }
  | {
      id: 'deploy.etc-merged';
      deployment: string;
      from?: string;
      kept: number;
      updated: number;
      added: number;
      removed: number;
      conflicts: string[];
    }
  | { id: 'deploy.boot-entry'; deployment: string; bootloader: string; tries: number }
  | { id: 'deploy.committed'; deployment: string; previous?: string };

/** Input of {@link deployRelease}. */
export interface DeployReleaseOptions {
  store: DeployStore;
  /** A manifest whose signature the caller has verified (bundle keyring, TUF). */
  manifest: Manifest;
  /** The manifest image whose signed tree is deployed. */
  image: string;
  source: TreeSource;
  /** This device's compatible string ([system] compatible). */
  compatible: string;
  /** The running deployment, whose /etc is merged; default: the store's default deployment. */
  booted?: string;
  /** Deployments kept by prune after the commit (default 3). */
  keep?: number;
  checkout?: CheckoutMode;
  /** Where each deployment's /etc conflicts go (`<dir>/<deployment>/`). */
  conflictDir: string;
  /** [policy] allow-downgrade. */
  allowDowngrade?: boolean;
  /** The boot side ([deploy] boot); absent: the store only. */
  boot?: DeployBoot;
  /** Boot attempts of the new deployment before the previous boots again (default 3). */
  bootAttempts?: number;
  onEvent?: (e: DeployEvent) => void;
}

/** What {@link deployRelease} did. */
export interface DeployResult {
  deployment: string;
  release: DeploymentRelease;
  tree: string;
  /** Objects imported from the source, and their bytes. */
  fetched: { objects: number; bytes: number };
  space: SpaceNeeds;
  etc: EtcMergeReport;
  /** The deployment whose /etc was carried over; absent on a first deploy. */
  etcFrom?: string;
  pruned: string[];
  gc: GcResult;
}

/**
 * Pure: refuses a manifest for another device class (BUNDLE_INCOMPATIBLE) or with a release
 * counter below that of the default deployment (BUNDLE_DOWNGRADE, unless allowed).
 */
export function checkDeployable(
  manifest: Manifest,
  compatible: string,
  current: DeploymentInfo | undefined,
  allowDowngrade = false,
): void {
  if (manifest.compatible !== compatible)
    throw new FerryError(
      'BUNDLE_INCOMPATIBLE',
      `release is for '${manifest.compatible}', this device is '${compatible}'`,
    );
  // Refuse a lower release counter: the rollback attack (an old, validly signed, vulnerable release).
  if (current && manifest.releaseCounter < current.release.counter && !allowDowngrade)
    throw new FerryError(
      'BUNDLE_DOWNGRADE',
      `release counter ${manifest.releaseCounter} is below ${current.release.counter} of the default deployment ${current.id}`,
    );
}

/** Fetches the listing and refuses it unless it is byte for byte the one the manifest signs. */
async function fetchListing(source: TreeSource, tree: SignedTree): Promise<TreeListing> {
  const bytes = await source.listing(tree);
  // Attack stopped: mix-and-match; any listing but the signed one is refused before parsing.
  if (bytes.length !== tree.size || treeDigest(bytes) !== tree.sha256)
    throw new FerryError(
      'DEPLOY_TREE_MISMATCH',
      `the listing is not the signed tree ${tree.sha256}`,
    );
  const listing = parseTree(bytes);
  if (listing.entries.length !== tree.entries)
    throw new FerryError(
      'DEPLOY_TREE_MISMATCH',
      `the listing does not have ${tree.entries} entries`,
    );
  return listing;
}

/** Wraps `src` to report each object once the store has read all of it. */
function counted(
  src: ObjectSource,
  total: number,
  totalBytes: number,
  emit: (e: DeployEvent) => void,
): ObjectSource {
  let done = 0;
  let bytes = 0;
  return {
    async open(id, e) {
      const stream = await src.open(id, e);
      return (async function* () {
        for await (const chunk of stream as AsyncIterable<Uint8Array>) yield chunk;
        done++;
        bytes += e.size!;
        emit({ id: 'deploy.progress', done, total, bytes, totalBytes });
        faultPoint('deploy-object');
      })();
    },
  };
}

/** Undoes a deployment that was checked out but never made default. */
async function discard(o: DeployReleaseOptions, id: string): Promise<void> {
  await o.boot?.remove(id).catch(() => {});
  await o.store.remove(id).catch(() => {});
  await removeStaleEtc(o.store, o.conflictDir).catch(() => {});
}

type Emit = (e: DeployEvent) => void;

/** Preflight, then the objects the store lacks from the source. */
async function importTree(o: DeployReleaseOptions, listing: TreeListing, emit: Emit) {
  const space = await o.store.preflight(listing, o.checkout ?? 'hardlink');
  const entries = objectEntries(listing);
  const todo = (await o.store.missingObjects(listing)).map(
    (id) => [id, entries.get(id)!] as [string, TreeEntry],
  );
  const totalBytes = todo.reduce((n, [, e]) => n + e.size!, 0);
  const planned = { objects: todo.length, bytes: totalBytes, neededBytes: space.neededBytes };
  emit({ id: 'deploy.planned', ...planned });
  o.source.willOpen?.(todo);
  const objects = counted(o.source.objects, todo.length, totalBytes, emit);
  return { space, fetched: await o.store.importObjects(listing, objects) };
}

/** Checkout, verification and /etc; on any failure the new deployment is removed again. */
async function checkoutWithEtc(
  o: DeployReleaseOptions,
  listing: TreeListing,
  release: DeploymentRelease,
  from: string | undefined,
  emit: Emit,
): Promise<{ id: string; etc: EtcResult }> {
  const d = await o.store.checkout(listing, { release, mode: o.checkout ?? 'hardlink' });
  faultPoint('deploy-checked-out');
  try {
    await o.store.verifyDeployment(d.id);
    emit({ id: 'deploy.checked-out', deployment: d.id });
    const etc = await makeEtc(o.store, d.id, from, o.conflictDir);
    const r = etc.report;
    emit({
      id: 'deploy.etc-merged',
      deployment: d.id,
      ...(etc.from ? { from: etc.from } : {}),
      ...{ kept: r.kept, updated: r.updated, added: r.added, removed: r.removed },
      conflicts: r.conflicts.map((c) => c.path),
    });
    return { id: d.id, etc };
  } catch (e) {
    await discard(o, d.id);
    throw e;
  }
}

/**
 * Installs the tree `manifest` signs for `image` as a new deployment and makes it the default.
 * Steps: check compatible and counter, fetch and check the listing against the signed digest,
 * preflight space, import missing objects (each verified by id), check out, verify, make its
 * /etc, set default (the commit point), prune to `keep`, gc.
 *
 * @example
 * const store = await DeployStore.open('/var/lib/ferry/deploy');
 * const r = await deployRelease({
 *   store, manifest, image: 'rootfs', compatible: 'board-x',
 *   source: new HttpTreeSource(repoUrl, fetcher), booted: '3-0a1b2c3d4e5f',
 *   conflictDir: '/var/lib/ferry/etc-conflicts', onEvent: (e) => log(e),
 * });
 */
export async function deployRelease(o: DeployReleaseOptions): Promise<DeployResult> {
  const emit = o.onEvent ?? (() => {});
  const { store, manifest } = o;
  const current = store.list().find((d) => d.isDefault);
  checkDeployable(manifest, o.compatible, current, o.allowDowngrade);
  const tree = signedTree(manifest, o.image);
  const release = { version: manifest.version, counter: manifest.releaseCounter };
  emit({ id: 'deploy.started', ...release, image: o.image, tree: tree.sha256 });
  const listing = await fetchListing(o.source, tree);
  faultPoint('deploy-listed');
  const { space, fetched } = await importTree(o, listing, emit);
  const { id, etc } = await checkoutWithEtc(o, listing, release, o.booted ?? current?.id, emit);
  const tries = o.bootAttempts ?? 3;
  if (o.boot) {
    const d = { id, version: manifest.version, path: store.deploymentPath(id) };
    await o.boot.add(d, tries).catch(async (e: unknown) => {
      await discard(o, id);
      throw e;
    });
    emit({ id: 'deploy.boot-entry', deployment: id, bootloader: o.boot.name, tries });
    faultPoint('deploy-boot-added');
  }
  // Invariant: the bootloader's switch is the commit point; everything before it left the old
  // default booting. The store's record follows it.
  await o.boot?.commit(id, tries);
  faultPoint('deploy-boot-committed');
  await store.setDefault(id);
  emit({ id: 'deploy.committed', deployment: id, ...(current ? { previous: current.id } : {}) });
  faultPoint('deploy-default-set');
  const pruned = await store.prune(o.keep ?? 3);
  faultPoint('deploy-pruned');
  for (const p of pruned) await o.boot?.remove(p);
  await removeStaleEtc(store, o.conflictDir);
  const gc = await store.gc();
  return {
    deployment: id,
    release,
    tree: tree.sha256,
    fetched,
    space,
    etc: etc.report,
    ...(etc.from ? { etcFrom: etc.from } : {}),
    pruned,
    gc,
  };
}
