/**
 * The device's deployments as the CLI and the daemon use them: the store named by [deploy],
 * updating from the [update] repository (the same TUF check as a slot update, then the tree
 * over HTTP), rollback to a kept deployment, pin, gc and `etc diff`.
 */
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { encodeTree, FerryError, loadKeyring } from '@ferry/core';
import { bootedDeployment } from './deploy-boot.ts';
import { deployBootFor, type DeployBoot } from './deploy-bootloader.ts';
import type { SystemConfig } from './config.ts';
import { defaultEtcPath, liveEtcPath, removeStaleEtc, requireEtc } from './deploy-etc.ts';
import { HttpTreeSource } from './deploy-http.ts';
import {
  deployRelease,
  type DeployEvent,
  type DeployReleaseOptions,
  type DeployResult,
} from './deploy-install.ts';
import { recoverDeployments } from './deploy-recover.ts';
import { treeImage } from './deploy-source.ts';
import type { StoreUsage } from './deploy-space.ts';
import { DeployStore, type DeploymentInfo, type GcResult } from './deploy-store.ts';
import { diffEtc, type EtcChange } from './etc-merge.ts';
import { HttpFetcher } from './http-fetch.ts';
import { StateStore } from './state.ts';
import { checkUpdate, type UpdateCheck } from './update.ts';

/** `<root>/proc/cmdline`, at most 64 KiB; empty when there is none (a fake root). */
async function readCmdline(root: string): Promise<string> {
  let fh;
  try {
    fh = await open(join(root, 'proc/cmdline'), 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw e;
  }
  try {
    const buf = Buffer.alloc(64 * 1024);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return buf.toString('utf8', 0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** One deployment in {@link DeployStatus}. */
export interface DeploymentStatus extends DeploymentInfo {
  /** Its writable /etc, `<store>/etc/<id>`. */
  etc: string;
}

/** What `ferry deploy status` shows. */
export interface DeployStatus {
  store: string;
  keep: number;
  default?: string;
  booted?: string;
  previous?: string;
  /** Oldest first. */
  deployments: DeploymentStatus[];
  usage: StoreUsage;
}

/** What `ferry deploy update` did. */
export interface DeployUpdateResult {
  check: UpdateCheck;
  /** Whether the newest release is above the default deployment's counter. */
  available: boolean;
  deployed?: DeployResult;
}

/** The options of deployRelease a device's configuration decides. */
export type DevicePolicy = Pick<
  DeployReleaseOptions,
  'booted' | 'keep' | 'checkout' | 'conflictDir' | 'allowDowngrade' | 'boot' | 'bootAttempts'
>;

/** Events of a deploy update: the check, then {@link DeployEvent}s. */
export type DeployUpdateEvent = DeployEvent | { id: 'update.checked'; check: UpdateCheck };

/**
 * @example
 * const d = await DeviceDeployments.open(await loadConfig());
 * const r = await d.update({ onEvent: (e) => log(e) });
 * if (r.deployed) console.log(`next boot: ${r.deployed.deployment}`);
 */
export class DeviceDeployments {
  readonly config: SystemConfig;
  readonly store: DeployStore;
  /** The boot side [deploy] boot names; undefined for `none`. */
  readonly boot: DeployBoot | undefined;

  private constructor(config: SystemConfig, store: DeployStore) {
    this.config = config;
    this.store = store;
    this.boot = deployBootFor(config.deploy);
  }

  /**
   * Opens (creating if needed) the store [deploy] store names, records as booted the
   * deployment `ferry.deployment=` on the kernel command line names, if the store has it, and
   * reconciles the store with the boot side after a power cut (recoverDeployments).
   */
  static async open(config: SystemConfig): Promise<DeviceDeployments> {
    const store = await DeployStore.open(config.deploy.store);
    const booted = bootedDeployment(await readCmdline(config.root));
    const known = store.list().find((d) => d.id === booted);
    if (known && !known.isBooted) await store.markBooted(known.id);
    await recoverDeployments(store, deployBootFor(config.deploy), config.deploy.etcConflicts);
    return new DeviceDeployments(config, store);
  }

  #find(flag: 'isDefault' | 'isBooted' | 'isPrevious'): DeploymentInfo | undefined {
    return this.store.list().find((d) => d[flag]);
  }

  /** The running deployment, else the default one (what the next boot runs). */
  current(): DeploymentInfo | undefined {
    return this.#find('isBooted') ?? this.#find('isDefault');
  }

  async status(): Promise<DeployStatus> {
    const [def, booted, prev] = [
      this.#find('isDefault'),
      this.#find('isBooted'),
      this.#find('isPrevious'),
    ];
    return {
      store: this.store.dir,
      keep: this.config.deploy.keep,
      ...(def ? { default: def.id } : {}),
      ...(booted ? { booted: booted.id } : {}),
      ...(prev ? { previous: prev.id } : {}),
      deployments: this.store.list().map((d) => ({ ...d, etc: liveEtcPath(this.store, d.id) })),
      usage: await this.store.du(),
    };
  }

  /**
   * Checks the repository as `ferry update` does (TUF refresh, channel index, manifest verified
   * against the bundle keyring); deploys the newest release if its counter is above the
   * default deployment's.
   */
  async update(
    opts: { onEvent?: (e: DeployUpdateEvent) => void; image?: string; signal?: AbortSignal } = {},
  ): Promise<DeployUpdateResult> {
    const { config } = this;
    const keyring = await loadKeyring(config.keyring);
    const state = await new StateStore(config.dataDir).load();
    const { check, found } = await checkUpdate({ config, keyring, state, booted: undefined });
    opts.onEvent?.({ id: 'update.checked', check });
    const def = this.#find('isDefault');
    const available = !def || found.manifest.releaseCounter > def.release.counter;
    if (!available) return { check, available };
    const u = config.update;
    const fetcher = new HttpFetcher({
      parallel: u.parallel,
      timeoutMs: u.timeoutSeconds * 1000,
      minRate: u.minRate,
      bandwidth: u.bandwidth,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    const source = new HttpTreeSource(u.repository!, fetcher, {
      parallel: u.parallel,
      ...(def ? { baseListing: await this.#listing(def.tree) } : {}),
    });
    try {
      const deployed = await deployRelease({
        store: this.store,
        manifest: found.manifest,
        image: treeImage(found.manifest, opts.image),
        source,
        compatible: config.compatible,
        ...this.deployOptions(),
        ...(opts.onEvent ? { onEvent: opts.onEvent } : {}),
      });
      return { check, available, deployed };
    } finally {
      source.close();
    }
  }

  /** The raw listing of a tree the store holds, the base of a listing delta. */
  async #listing(tree: string): Promise<{ sha256: string; bytes: Buffer }> {
    return { sha256: tree, bytes: encodeTree(await this.store.readTree(tree)) };
  }

  /** What deployRelease takes from [deploy], [policy] and the store's booted record. */
  deployOptions(): DevicePolicy {
    const booted = this.#find('isBooted');
    return {
      ...(booted ? { booted: booted.id } : {}),
      keep: this.config.deploy.keep,
      checkout: this.config.deploy.checkout,
      conflictDir: this.config.deploy.etcConflicts,
      allowDowngrade: this.config.policy.allowDowngrade,
      ...(this.boot ? { boot: this.boot } : {}),
      bootAttempts: this.config.deploy.bootAttempts,
    };
  }

  /**
   * Makes `id` (default: the previous default) the deployment to boot next. It boots with the
   * /etc it had when it last ran. ROLLBACK_NO_TARGET when there is no previous deployment.
   */
  async rollback(id?: string): Promise<{ from?: string; to: string }> {
    const to = id ?? this.#find('isPrevious')?.id;
    if (to === undefined)
      throw new FerryError('ROLLBACK_NO_TARGET', 'no previous deployment to roll back to');
    await requireEtc(this.store, to);
    const from = this.#find('isDefault')?.id;
    // A kept deployment has booted before: it is committed, not put on trial again.
    await this.boot?.commit(to, undefined);
    await this.store.setDefault(to);
    return { ...(from ? { from } : {}), to };
  }

  /**
   * Marks the running deployment good: the bootloader stops counting its attempts. What
   * `ferry boot-check` does for a deployment once the health checks pass.
   */
  async markGood(): Promise<{ deployment: string }> {
    const d = this.#find('isBooted') ?? this.#find('isDefault');
    if (!d) throw new FerryError('DEPLOY_NOT_FOUND', `no deployment in ${this.store.dir}`);
    await this.boot?.markGood(d.id);
    return { deployment: d.id };
  }

  /** Prunes to [deploy] keep, removes the /etc of removed deployments, then deletes unused objects. */
  async gc(): Promise<{ pruned: string[]; gc: GcResult }> {
    const pruned = await this.store.prune(this.config.deploy.keep);
    for (const p of pruned) await this.boot?.remove(p);
    await removeStaleEtc(this.store, this.config.deploy.etcConflicts);
    return { pruned, gc: await this.store.gc() };
  }

  /** The local changes of the running (else default) deployment's /etc against its defaults. */
  async etcDiff(): Promise<{ deployment: string; changes: EtcChange[] }> {
    const d = this.current();
    if (!d) throw new FerryError('DEPLOY_NOT_FOUND', `no deployment in ${this.store.dir}`);
    await requireEtc(this.store, d.id);
    const changes = await diffEtc({
      defaults: defaultEtcPath(this.store, d.id),
      live: liveEtcPath(this.store, d.id),
    });
    return { deployment: d.id, changes };
  }
}
