/**
 * The deployment store: OS trees kept side by side as hardlink checkouts of one
 * content-addressed object store, as OSTree does. Layout under the store dir:
 *   objects/<2 hex>/<62 hex>   file objects (mode, owner, xattrs applied, mtime 0)
 *   trees/<digest>.tree        tree listings (docs/formats/tree.md)
 *   deployments/<n>-<12 hex>/  checked-out trees
 *   deployments.json           the record; its atomic replacement commits every operation
 * One writer at a time (the agent daemon): open() removes what an interrupted writer left.
 */
import { lstat, mkdir, readFile, readdir, rename, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import {
  FerryError,
  comparePaths,
  encodeTree,
  fsyncDir,
  parseTree,
  pathExists,
  scanTree,
  treeDigest,
  writeFileAtomic,
  type TreeEntry,
  type TreeListing,
} from '@ferry/core';
import { buildCheckout, type CheckoutMode } from './deploy-checkout.ts';
import { removeTree, syncFs } from './deploy-fs.ts';
import {
  importMissing,
  missingObjectIds,
  objectEntries,
  objectPath,
  type ObjectSource,
} from './deploy-objects.ts';
import { checkSpace, storeUsage, type SpaceNeeds, type StoreUsage } from './deploy-space.ts';
import { faultPoint } from './fault.ts';
import {
  DEPLOYMENT_ID,
  loadState,
  saveState,
  type DeployState,
  type DeploymentRecord,
  type DeploymentRelease,
} from './deploy-state.ts';

/** Options of {@link DeployStore.checkout}. */
export interface CheckoutOptions {
  release: DeploymentRelease;
  /** hardlink (default), reflink (btrfs, xfs) or copy: see docs/deployments.md. */
  mode?: CheckoutMode;
}

/** A deployment as {@link DeployStore.list} shows it. */
export interface DeploymentInfo extends DeploymentRecord {
  path: string;
  isDefault: boolean;
  isBooted: boolean;
  isPrevious: boolean;
}

/** What {@link DeployStore.gc} deleted. */
export interface GcResult {
  objects: number;
  /** Apparent bytes of the deleted objects. */
  bytes: number;
  trees: number;
}

/**
 * @example
 * const store = await DeployStore.open('/var/lib/ferry/deploy');
 * await store.preflight(listing);
 * await store.importObjects(listing, new DirectoryObjectSource('/mnt/image', listing));
 * const d = await store.checkout(listing, { release: { version: '2.0.0', counter: 2 } });
 * await store.verifyDeployment(d.id);
 * await store.setDefault(d.id);
 */
export class DeployStore {
  readonly dir: string;
  #state: DeployState;

  private constructor(dir: string, state: DeployState) {
    this.dir = dir;
    this.#state = state;
  }

  /** Opens (creating if needed) the store at `dir` and clears what an interrupted writer left. */
  static async open(dir: string): Promise<DeployStore> {
    await mkdir(join(dir, 'objects', 'tmp'), { recursive: true, mode: 0o700 });
    await mkdir(join(dir, 'trees'), { recursive: true });
    await mkdir(join(dir, 'deployments'), { recursive: true });
    const store = new DeployStore(dir, await loadState(join(dir, 'deployments.json')));
    await store.#recover();
    return store;
  }

  async #recover(): Promise<void> {
    for (const n of await readdir(join(this.dir, 'objects', 'tmp')))
      await rm(join(this.dir, 'objects', 'tmp', n), { force: true });
    const known = new Set(this.#state.deployments.map((d) => d.id));
    // A checkout renamed into place but never recorded, or half built, or half removed.
    for (const n of await readdir(join(this.dir, 'deployments')))
      if (!known.has(n)) await removeTree(join(this.dir, 'deployments', n));
  }

  /** The directory of deployment `id`. */
  deploymentPath(id: string): string {
    return join(this.dir, 'deployments', this.#record(id).id);
  }

  #record(id: string): DeploymentRecord {
    const r = DEPLOYMENT_ID.test(id) ? this.#state.deployments.find((d) => d.id === id) : undefined;
    if (!r) throw new FerryError('DEPLOY_NOT_FOUND', `no deployment ${id.slice(0, 80)}`);
    return r;
  }

  async #commit(change: (s: DeployState) => void): Promise<void> {
    const next = structuredClone(this.#state);
    change(next);
    await saveState(join(this.dir, 'deployments.json'), next);
    this.#state = next;
  }

  /** The object ids of `listing` not yet in the store: what an update must fetch. */
  missingObjects(listing: TreeListing): Promise<string[]> {
    return missingObjectIds(this.dir, listing);
  }

  /**
   * Refuses (DEPLOY_NO_SPACE, naming both figures) when the store's filesystem lacks the bytes
   * or inodes the missing objects and a checkout of `listing` need. Writes nothing.
   */
  async preflight(listing: TreeListing, mode: CheckoutMode = 'hardlink'): Promise<SpaceNeeds> {
    return checkSpace(this.dir, listing, await this.missingObjects(listing), mode);
  }

  /**
   * Imports the objects of `listing` the store lacks from `source`. Each is hashed while
   * written; one that does not match its id is DEPLOY_OBJECT_MISMATCH and nothing of it is kept.
   */
  importObjects(
    listing: TreeListing,
    source: ObjectSource,
  ): Promise<{ objects: number; bytes: number }> {
    return importMissing(this.dir, listing, source);
  }

  /**
   * Checks `listing` out as a new deployment: built in deployments/.tmp-<id>, flushed, then
   * renamed into place and recorded, so a power cut leaves no deployment or a complete one.
   * DEPLOY_OBJECT_MISSING if an object was not imported first.
   */
  async checkout(listing: TreeListing, opts: CheckoutOptions): Promise<DeploymentRecord> {
    const bytes = encodeTree(listing);
    const tree = treeDigest(bytes);
    const missing = await this.missingObjects(listing);
    if (missing.length > 0)
      throw new FerryError(
        'DEPLOY_OBJECT_MISSING',
        `${missing.length} objects missing, e.g. ${missing[0]}`,
      );
    const treePath = join(this.dir, 'trees', `${tree}.tree`);
    if (!(await pathExists(treePath))) await writeFileAtomic(treePath, bytes);
    const id = `${this.#state.next}-${tree.slice(0, 12)}`;
    const tmp = join(this.dir, 'deployments', `.tmp-${id}`);
    await removeTree(tmp);
    await buildCheckout(listing, tmp, (o) => objectPath(this.dir, o), opts.mode ?? 'hardlink');
    await syncFs(tmp);
    await rename(tmp, join(this.dir, 'deployments', id));
    await fsyncDir(join(this.dir, 'deployments'));
    const rec: DeploymentRecord = {
      id,
      tree,
      release: { ...opts.release },
      created: new Date().toISOString(),
      pinned: false,
    };
    await this.#commit((s) => {
      s.next++;
      s.deployments.push(rec);
    });
    return rec;
  }

  /** The listing recorded for a tree digest. */
  async readTree(tree: string): Promise<TreeListing> {
    return parseTree(await readFile(join(this.dir, 'trees', `${tree}.tree`)));
  }

  /**
   * Re-scans deployment `id` (lstat only, nothing followed) and compares its digest with the
   * recorded one: DEPLOY_TREE_MISMATCH naming the first differing path.
   */
  async verifyDeployment(id: string): Promise<{ tree: string }> {
    const rec = this.#record(id);
    const actual = await scanTree(this.deploymentPath(id));
    if (treeDigest(encodeTree(actual)) === rec.tree) return { tree: rec.tree };
    const path = firstDifference((await this.readTree(rec.tree)).entries, actual.entries);
    throw new FerryError('DEPLOY_TREE_MISMATCH', `deployment ${id} differs at /${path}`);
  }

  /** Every deployment, oldest first, with its flags. */
  list(): DeploymentInfo[] {
    const s = this.#state;
    return s.deployments.map((d) => ({
      ...structuredClone(d),
      path: join(this.dir, 'deployments', d.id),
      isDefault: s.default === d.id,
      isBooted: s.booted === d.id,
      isPrevious: s.previous === d.id,
    }));
  }

  /** Protects `id` from prune. */
  async pin(id: string): Promise<void> {
    this.#record(id);
    await this.#commit((s) => void (s.deployments.find((d) => d.id === id)!.pinned = true));
  }

  /** Lets prune remove `id` again. */
  async unpin(id: string): Promise<void> {
    this.#record(id);
    await this.#commit((s) => void (s.deployments.find((d) => d.id === id)!.pinned = false));
  }

  /** Makes `id` the deployment to boot next; the old default becomes `previous`. */
  async setDefault(id: string): Promise<void> {
    this.#record(id);
    await this.#commit((s) => {
      if (s.default !== id) s.previous = s.default;
      s.default = id;
    });
  }

  /** Records the deployment the system booted (the agent learns it from the kernel command line). */
  async markBooted(id: string): Promise<void> {
    this.#record(id);
    await this.#commit((s) => void (s.booted = id));
  }

  /** Removes deployment `id` (not its objects: see gc). DEPLOY_IN_USE for the default or booted one. */
  async remove(id: string): Promise<void> {
    this.#record(id);
    const s = this.#state;
    if (s.default === id || s.booted === id)
      throw new FerryError(
        'DEPLOY_IN_USE',
        `${id} is the ${s.default === id ? 'default' : 'booted'} deployment`,
      );
    await this.#commit((n) => {
      n.deployments = n.deployments.filter((d) => d.id !== id);
      if (n.previous === id) n.previous = null;
    });
    // After the commit: a power cut here leaves an unrecorded dir that open() removes.
    await removeTree(join(this.dir, 'deployments', id));
  }

  /**
   * Keeps the `keep` newest deployments and every pinned, default or booted one; removes the
   * others, oldest first. Returns the removed ids.
   */
  async prune(keep: number): Promise<string[]> {
    const s = this.#state;
    const newest = new Set(
      s.deployments.slice(Math.max(0, s.deployments.length - keep)).map((d) => d.id),
    );
    const doomed = s.deployments.filter(
      (d) => !newest.has(d.id) && !d.pinned && d.id !== s.default && d.id !== s.booted,
    );
    for (const d of doomed) await this.remove(d.id);
    return doomed.map((d) => d.id);
  }

  /** Deletes objects and listings no recorded deployment references. */
  async gc(): Promise<GcResult> {
    const trees = new Set(this.#state.deployments.map((d) => d.tree));
    const live = new Set<string>();
    for (const t of trees)
      for (const id of objectEntries(await this.readTree(t)).keys()) live.add(id);
    const r: GcResult = { objects: 0, bytes: 0, trees: 0 };
    const objects = join(this.dir, 'objects');
    for (const sub of await readdir(objects)) {
      if (!/^[0-9a-f]{2}$/.test(sub)) continue;
      for (const n of await readdir(join(objects, sub))) {
        if (live.has(sub + n)) continue;
        const p = join(objects, sub, n);
        r.bytes += (await lstat(p)).size;
        await unlink(p);
        r.objects++;
        faultPoint('deploy-gc');
      }
    }
    for (const n of await readdir(join(this.dir, 'trees')))
      if (!trees.has(n.replace(/\.tree$/, ''))) {
        await rm(join(this.dir, 'trees', n), { force: true });
        r.trees++;
      }
    return r;
  }

  /** Bytes the store uses (each object once) against the deployments' apparent sizes. */
  async du(): Promise<StoreUsage> {
    const trees = [];
    for (const d of this.#state.deployments) trees.push(await this.readTree(d.tree));
    return storeUsage(this.dir, trees);
  }
}

/** The first path at which two sorted entry lists differ (the one that sorts first). */
export function firstDifference(a: TreeEntry[], b: TreeEntry[]): string {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const x = a[i];
    const y = b[i];
    if (!x || !y) return (x ?? y)!.path;
    if (x.path !== y.path) return comparePaths(x.path, y.path) < 0 ? x.path : y.path;
    if (encodeEntry(x) !== encodeEntry(y)) return x.path;
  }
  return '';
}

const encodeEntry = (e: TreeEntry): string =>
  JSON.stringify([
    e.type,
    e.mode,
    e.uid,
    e.gid,
    e.size,
    e.object,
    e.target,
    e.major,
    e.minor,
    Object.entries(e.xattrs ?? {}).sort(),
  ]);
