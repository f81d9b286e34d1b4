/**
 * The writable /etc of each deployment. A checkout is pristine and never written: its `etc/` is
 * the release's defaults. The /etc a deployment runs with lives beside the checkouts, in
 * `<store>/etc/<id>/` (the initramfs bind-mounts it over /etc); it is made when the deployment
 * is made, by carrying the running deployment's local changes onto the new defaults
 * (etc-merge.ts), and removed with the deployment.
 */
import { lstat, readdir, rename, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { FerryError, fsyncDir } from '@ferry/core';
import { DEPLOYMENT_ID } from './deploy-state.ts';
import type { DeployStore } from './deploy-store.ts';
import { removeTree, syncFs } from './deploy-fs.ts';
import { mergeEtc, type EtcMergeReport } from './etc-merge.ts';
import { faultPoint } from './fault.ts';

/** `<store>/etc/<id>`: the writable, merged /etc of deployment `id`. */
export function liveEtcPath(store: DeployStore, id: string): string {
  return join(store.dir, 'etc', id);
}

/** `<checkout>/etc`: the defaults deployment `id` shipped with (read-only). */
export function defaultEtcPath(store: DeployStore, id: string): string {
  return join(store.deploymentPath(id), 'etc');
}

async function isDir(path: string): Promise<boolean> {
  try {
    return (await lstat(path)).isDirectory();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

/** DEPLOY_ETC_MISSING unless deployment `id` has its defaults and its own /etc. */
export async function requireEtc(store: DeployStore, id: string): Promise<void> {
  for (const p of [defaultEtcPath(store, id), liveEtcPath(store, id)])
    if (!(await isDir(p)))
      throw new FerryError('DEPLOY_ETC_MISSING', `deployment ${id} has no ${p}`);
}

/** What {@link makeEtc} did: the merge report, and the deployment whose /etc was carried over. */
export interface EtcResult {
  report: EtcMergeReport;
  /** The deployment whose live /etc was merged; absent on a first deploy. */
  from?: string;
}

/**
 * Makes `<store>/etc/<id>`: a three-way merge of `from`'s live /etc (its changes against its
 * own defaults) onto `id`'s defaults, or on a first deploy a copy of the defaults (a merge in
 * which nothing was changed locally). Built in `<id>.tmp`, flushed, then renamed into place.
 * Conflicting new defaults and report.json go to `<conflictRoot>/<id>/`.
 */
export async function makeEtc(
  store: DeployStore,
  id: string,
  from: string | undefined,
  conflictRoot: string,
): Promise<EtcResult> {
  const newDefaults = defaultEtcPath(store, id);
  if (!(await isDir(newDefaults)))
    throw new FerryError('DEPLOY_ETC_MISSING', `the tree of ${id} has no etc directory`);
  if (from !== undefined) await requireEtc(store, from);
  const root = join(store.dir, 'etc');
  await mkdir(root, { recursive: true, mode: 0o755 });
  await mkdir(conflictRoot, { recursive: true, mode: 0o700 });
  const tmp = join(root, `${id}.tmp`);
  const conflictDir = join(conflictRoot, id);
  await removeTree(tmp);
  await removeTree(conflictDir);
  const report = await mergeEtc({
    oldDefaults: from === undefined ? newDefaults : defaultEtcPath(store, from),
    live: from === undefined ? newDefaults : liveEtcPath(store, from),
    newDefaults,
    out: tmp,
    conflictDir,
  });
  await syncFs(tmp);
  faultPoint('deploy-etc-written');
  await rename(tmp, liveEtcPath(store, id));
  await fsyncDir(root);
  return { report, ...(from !== undefined ? { from } : {}) };
}

/**
 * Removes every entry of `<store>/etc/` (and of `conflictRoot`) that does not belong to a
 * recorded deployment: those of pruned deployments and what an interrupted deploy left
 * (`<id>.tmp`). Returns the names removed from `<store>/etc/`.
 */
export async function removeStaleEtc(store: DeployStore, conflictRoot?: string): Promise<string[]> {
  const live = new Set(store.list().map((d) => d.id));
  const sweep = async (root: string): Promise<string[]> => {
    if (!(await isDir(root))) return [];
    const stale = (await readdir(root)).filter((n) => !(DEPLOYMENT_ID.test(n) && live.has(n)));
    for (const n of stale) await removeTree(join(root, n));
    return stale;
  };
  if (conflictRoot !== undefined) await sweep(conflictRoot);
  return sweep(join(store.dir, 'etc'));
}
