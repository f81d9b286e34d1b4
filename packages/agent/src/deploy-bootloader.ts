/**
 * The boot side of deployments behind one interface, chosen by `[deploy] boot`: systemd-boot
 * (Boot Loader Spec entries, counting in file names, a boot rank) or GRUB (the same entries as
 * the source of a menu fragment, counting in grubenv). `none` keeps the store only, for devices
 * whose boot side is managed elsewhere and for tests of the store.
 *
 * Invariant: `add` never changes what boots; `commit` is one atomic write (the entry's rank, or
 * the grubenv block), so a power cut leaves either the old or the new default.
 */
import type { DeployConfig } from './config.ts';
import {
  blessEntry,
  listBootEntries,
  removeBootEntry,
  setDefaultEntry,
  writeBootEntry,
  type BootDeployment,
  type DeployBootEntry,
} from './deploy-boot.ts';
import {
  grubMarkGood,
  grubSetDefault,
  readGrubDeployments,
  writeGrubDeployments,
} from './deploy-boot-grub.ts';

/** What a deployment flow asks of the bootloader. */
export interface DeployBoot {
  readonly name: DeployConfig['boot'];
  /** Writes the boot entry of a checked-out deployment, without making it the default. */
  add(d: BootDeployment, tries: number | undefined): Promise<void>;
  /** Makes `id` boot next: on trial with `tries` attempts, or committed when undefined. */
  commit(id: string, tries: number | undefined): Promise<void>;
  /** Marks the running deployment good: no more counting. */
  markGood(id: string): Promise<void>;
  /** Removes a pruned deployment's entry (and kernels no entry uses). */
  remove(id: string): Promise<void>;
  /** The deployment the last `commit` made the default, whether or not its attempts ran out. */
  committed(): Promise<string | undefined>;
  /** The deployments that have a boot entry. */
  entries(): Promise<string[]>;
}

const entryIds = async (bootDir: string) => (await listBootEntries(bootDir)).map((e) => e.id);

/** systemd-boot: entries with `+LEFT` counters; the rank makes an entry the default. */
function systemdBoot(c: DeployConfig): DeployBoot {
  const entry = (d: BootDeployment, tries: number | undefined) =>
    writeBootEntry({
      bootDir: c.bootDir,
      deployment: d,
      root: c.kernelRoot,
      kernelArgs: c.kernelArgs,
      ...(tries !== undefined ? { tries } : {}),
    });
  return {
    name: 'systemd-boot',
    add: async (d, tries) => void (await entry(d, tries)),
    commit: (id) => setDefaultEntry(c.bootDir, id),
    markGood: async (id) => {
      const e = (await listBootEntries(c.bootDir)).find((x) => x.id === id);
      if (e?.left !== undefined) await blessEntry(c.bootDir, id);
    },
    remove: (id) => removeBootEntry(c.bootDir, id),
    // The rank is what commit writes; running out of tries reorders entries, not ranks.
    committed: async () => {
      const all = await listBootEntries(c.bootDir);
      const top = all.reduce<DeployBootEntry | undefined>(
        (a, e) => (a && a.rank >= e.rank ? a : e),
        undefined,
      );
      return top && top.rank > 0 ? top.id : undefined;
    },
    entries: () => entryIds(c.bootDir),
  };
}

/** GRUB: the entries feed the menu fragment; grubenv holds the default and the counter. */
function grub(c: DeployConfig): DeployBoot {
  return {
    name: 'grub',
    add: async (d) => {
      await writeBootEntry({
        bootDir: c.bootDir,
        deployment: d,
        root: c.kernelRoot,
        kernelArgs: c.kernelArgs,
      });
      await writeGrubDeployments(c.bootDir);
    },
    commit: (id, tries) => grubSetDefault(c.grubEnv, id, tries),
    markGood: (id) => grubMarkGood(c.grubEnv, id),
    remove: async (id) => {
      await removeBootEntry(c.bootDir, id);
      await writeGrubDeployments(c.bootDir);
    },
    committed: async () => (await readGrubDeployments(c.grubEnv)).default,
    entries: () => entryIds(c.bootDir),
  };
}

/** The boot side `[deploy] boot` names, or undefined for `none`. */
export function deployBootFor(c: DeployConfig): DeployBoot | undefined {
  if (c.boot === 'systemd-boot') return systemdBoot(c);
  if (c.boot === 'grub') return grub(c);
  return undefined;
}
