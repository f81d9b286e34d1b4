/**
 * Bringing the deployment store back in line with the boot side after a power cut. The
 * bootloader's switch is the commit point of a deploy and of a rollback; deployments.json
 * follows it in the next step. What a cut can leave, and what recovery does:
 *
 * - the bootloader names the new default, deployments.json still the old one (cut between the
 *   two): the deploy is committed, so the store's default follows the bootloader;
 * - a recorded deployment that never got its /etc or boot entry (cut before the commit): it
 *   cannot boot and nothing names it, so it is removed;
 * - a boot entry of a deployment the store no longer records (prune cut before the entry went):
 *   the entry and the kernels only it used are removed;
 * - `etc/<id>.tmp` and conflict dirs of no deployment: removed.
 *
 * DeployStore.open has already removed unrecorded checkouts and objects/tmp.
 */
import type { DeployBoot } from './deploy-bootloader.ts';
import { removeStaleEtc, requireEtc } from './deploy-etc.ts';
import type { DeployStore } from './deploy-store.ts';

/** What {@link recoverDeployments} changed. */
export interface RecoverResult {
  /** The deployment made the store's default because the bootloader already boots it. */
  rolledForward?: string;
  /** Deployments removed: interrupted before their commit. */
  discarded: string[];
  /** Boot entries removed: their deployment was already gone. */
  entriesRemoved: string[];
}

const hasEtc = (store: DeployStore, id: string) =>
  requireEtc(store, id).then(
    () => true,
    () => false,
  );

/**
 * Reconciles `store` with `boot` (see the file comment). Run once at start-up, before any
 * other deployment work; it needs the one-writer rule the store has.
 *
 * @example
 * const store = await DeployStore.open(config.deploy.store);
 * await recoverDeployments(store, deployBootFor(config.deploy), config.deploy.etcConflicts);
 */
export async function recoverDeployments(
  store: DeployStore,
  boot: DeployBoot | undefined,
  conflictDir: string,
): Promise<RecoverResult> {
  const out: RecoverResult = { discarded: [], entriesRemoved: [] };
  const committed = await boot?.committed();
  const target = store.list().find((d) => d.id === committed);
  if (target && !target.isDefault && (await hasEtc(store, target.id))) {
    await store.setDefault(target.id);
    out.rolledForward = target.id;
  }
  const entries = new Set(boot ? await boot.entries() : []);
  for (const d of store.list()) {
    if (d.isDefault || d.isBooted || d.isPrevious || d.pinned) continue;
    if ((await hasEtc(store, d.id)) && (!boot || entries.has(d.id))) continue;
    await boot?.remove(d.id);
    await store.remove(d.id);
    out.discarded.push(d.id);
  }
  const recorded = new Set(store.list().map((d) => d.id));
  for (const id of entries)
    if (!recorded.has(id)) {
      await boot!.remove(id);
      out.entriesRemoved.push(id);
    }
  await removeStaleEtc(store, conflictDir);
  return out;
}
