/**
 * Deployments on the device: deploy status, update, install, rollback, mark-good, pin, unpin, gc,
 * and etc diff.
 * Thin wrappers over DeviceDeployments; the store is the one [deploy] store names.
 */
import { resolve } from 'node:path';
import {
  deployBundle,
  DeviceDeployments,
  type AgentEvent,
  type DeployStatus,
  type DeployUpdateEvent,
  type EtcChange,
} from '@ferry/agent';
import { FileSource } from '@ferry/core';
import { str, type CommandContext, type CommandSpec, type OptionSpec } from './command.ts';
import { DEVICE_OPTIONS, eventSink, loadDeviceConfig } from './device-options.ts';

async function openDeployments(ctx: CommandContext): Promise<DeviceDeployments> {
  return DeviceDeployments.open(await loadDeviceConfig(ctx));
}

/**
 * Whether this device boots deployments ([deploy] boot set): then `ferry status`, `install`,
 * `update` and `rollback` act on its deployments, as `ferry deploy ...` does.
 */
export async function bootsDeployments(ctx: CommandContext): Promise<boolean> {
  return (await loadDeviceConfig(ctx)).deploy.boot !== 'none';
}

const IMAGE_OPTION: OptionSpec = {
  type: 'string',
  placeholder: 'NAME',
  description: 'manifest image to deploy',
  default: 'the only image with a tree, else rootfs',
};

/** Deploy events to --json / --progress-fd, and object progress to the bar. */
function deployEvents(
  ctx: CommandContext,
  bar: ReturnType<CommandContext['out']['progress']>,
): (e: DeployUpdateEvent) => void {
  const sink = eventSink(ctx);
  return (e) => {
    // The sink only serialises the event; deploy events share AgentEvent's shape ({ id, ... }).
    sink?.(e as unknown as AgentEvent);
    if (e.id === 'deploy.progress')
      bar.update(e.bytes, e.totalBytes, `objects ${e.done}/${e.total}`);
  };
}

const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;

function humanStatus(s: DeployStatus): string {
  const lines = [`store ${s.store}: keeps ${s.keep}`];
  for (const d of s.deployments) {
    const marks = [
      d.isDefault ? 'default' : '',
      d.isBooted ? 'booted' : '',
      d.isPrevious ? 'previous' : '',
      d.pinned ? 'pinned' : '',
    ].filter(Boolean);
    lines.push(
      `  ${d.id.padEnd(20)} ${`${d.release.version} #${d.release.counter}`.padEnd(18)} ${d.created}  ${marks.join(',')}`,
    );
  }
  if (s.deployments.length === 0) lines.push('  no deployments');
  const u = s.usage;
  lines.push(
    `${u.objects} objects, store uses ${mib(u.storeBytes)} on disk; full copies would take ${mib(u.apparentBytes)}`,
  );
  return lines.join('\n');
}

export const deployStatus: CommandSpec = {
  name: 'deploy status',
  summary: 'Show the deployments: default, booted, previous, pinned, and the store size',
  options: DEVICE_OPTIONS,
  json: true,
  examples: ['ferry deploy status', 'ferry deploy status --json --root /tmp/fake-device'],
  async run(ctx) {
    const s = await (await openDeployments(ctx)).status();
    ctx.out.result(s, () => humanStatus(s));
  },
};

export const deployUpdate: CommandSpec = {
  name: 'deploy update',
  summary: 'Install the newest release of the followed channel as a new deployment',
  description:
    "Checks the [update] repository as `ferry update` does (TUF refresh, channel index, manifest verified against the bundle keyring). If the newest release's counter is above the default deployment's, fetches its tree listing (refused unless it is the one the manifest signs) and only the file objects the store lacks, several at once, each verified by id; checks out and verifies the new deployment, merges the running deployment's /etc changes onto the new defaults (conflicts recorded under [deploy] etc-conflicts), then makes it the default, prunes to [deploy] keep and deletes unused objects. The old default stays bootable until the last step.",
  options: {
    ...DEVICE_OPTIONS,
    image: IMAGE_OPTION,
    'progress-fd': {
      type: 'string',
      placeholder: 'N',
      description: 'also write JSON-lines events to file descriptor N',
    },
  },
  json: true,
  examples: ['ferry deploy update', 'ferry deploy update --json'],
  async run(ctx) {
    const dev = await openDeployments(ctx);
    const bar = ctx.out.progress('deploy');
    const onEvent = deployEvents(ctx, bar);
    const image = str(ctx, 'image');
    try {
      const r = await dev.update({ onEvent, ...(image ? { image } : {}) });
      bar.done();
      const d = r.deployed;
      ctx.out.result({ id: 'deploy.result', ok: true, ...r }, () =>
        d
          ? `deployed ${d.release.version} (#${d.release.counter}) as ${d.deployment}, the default from the next boot\n${d.fetched.objects} objects fetched (${mib(d.fetched.bytes)}); /etc: ${d.etc.kept} kept, ${d.etc.updated} updated, ${d.etc.added} added, ${d.etc.removed} removed, ${d.etc.conflicts.length} conflicts${d.pruned.length ? `; pruned ${d.pruned.join(', ')}` : ''}`
          : `channel ${r.check.channel}: latest ${r.check.latest?.version ?? 'none'}: up to date`,
      );
    } finally {
      bar.done();
    }
  },
};

export const deployInstall: CommandSpec = {
  name: 'deploy install',
  summary: 'Install the tree a bundle file signs as a new deployment (USB or offline)',
  description:
    "Checks the bundle's signatures against the device keyring and refuses another device's or an older release before anything is written. Then writes the image from its verified chunks to a temporary file in the store, mounts it read-only (needs root and loop devices), and deploys its tree: the listing must scan to the digest the manifest signs, only the file objects the store lacks are copied, /etc is merged and the new deployment becomes the default, as with deploy update.",
  positionals: [{ name: 'BUNDLE', description: 'a bundle file (.fbd)' }],
  options: {
    ...DEVICE_OPTIONS,
    image: IMAGE_OPTION,
  },
  json: true,
  examples: ['ferry deploy install /media/usb/gw-1.3.0.fbd'],
  async run(ctx) {
    const dev = await openDeployments(ctx);
    const bar = ctx.out.progress('deploy');
    const image = str(ctx, 'image');
    const source = new FileSource(resolve(ctx.positionals[0]!));
    try {
      const d = await deployBundle(dev, source, {
        ...(image ? { image } : {}),
        onEvent: deployEvents(ctx, bar),
      });
      bar.done();
      ctx.out.result(
        { id: 'deploy.result', ok: true, deployed: d },
        () =>
          `deployed ${d.release.version} (#${d.release.counter}) as ${d.deployment}, the default from the next boot; ${d.fetched.objects} objects copied (${mib(d.fetched.bytes)})`,
      );
    } finally {
      bar.done();
      await source.close();
    }
  },
};

export const deployRollback: CommandSpec = {
  name: 'deploy rollback',
  summary: 'Boot the previous (or the given) kept deployment next',
  description:
    'Makes the previous default deployment, or ID, the default. It boots with the /etc it had when it last ran: changes made since on a newer deployment are not carried back.',
  positionals: [
    { name: 'ID', description: 'a kept deployment (see deploy status)', optional: true },
  ],
  options: DEVICE_OPTIONS,
  json: true,
  examples: ['ferry deploy rollback', 'ferry deploy rollback 3-0a1b2c3d4e5f'],
  async run(ctx) {
    const r = await (await openDeployments(ctx)).rollback(ctx.positionals[0]);
    ctx.out.result(
      r,
      () => `${r.to} is the default from the next boot${r.from ? ` (was ${r.from})` : ''}`,
    );
  },
};

export const deployMarkGood: CommandSpec = {
  name: 'deploy mark-good',
  summary: 'Mark the running deployment good: the bootloader stops counting its attempts',
  description:
    'Run by the boot check once the health checks pass. With [deploy] boot = "systemd-boot" the entry loses its +LEFT counter; with "grub" its grubenv counter is removed. Until then, a deployment that never gets here falls back to the previous one when its attempts run out.',
  options: DEVICE_OPTIONS,
  json: true,
  examples: ['ferry deploy mark-good'],
  async run(ctx) {
    const r = await (await openDeployments(ctx)).markGood();
    ctx.out.result(r, () => `${r.deployment} marked good`);
  },
};

function pinCommand(action: 'pin' | 'unpin'): CommandSpec {
  return {
    name: `deploy ${action}`,
    summary:
      action === 'pin'
        ? 'Keep a deployment whatever [deploy] keep says'
        : 'Let pruning remove a pinned deployment again',
    positionals: [{ name: 'ID', description: 'a deployment (see deploy status)' }],
    options: DEVICE_OPTIONS,
    json: true,
    examples: [`ferry deploy ${action} 3-0a1b2c3d4e5f`],
    async run(ctx) {
      const id = ctx.positionals[0]!;
      const dev = await openDeployments(ctx);
      await (action === 'pin' ? dev.store.pin(id) : dev.store.unpin(id));
      ctx.out.result({ id, pinned: action === 'pin' }, () => `${id} ${action}ned`);
    },
  };
}

export const deployPin = pinCommand('pin');
export const deployUnpin = pinCommand('unpin');

export const deployGc: CommandSpec = {
  name: 'deploy gc',
  summary: 'Prune deployments to [deploy] keep and delete objects no deployment uses',
  options: DEVICE_OPTIONS,
  json: true,
  examples: ['ferry deploy gc --json'],
  async run(ctx) {
    const r = await (await openDeployments(ctx)).gc();
    ctx.out.result(
      r,
      () =>
        `pruned ${r.pruned.length ? r.pruned.join(', ') : 'nothing'}; deleted ${r.gc.objects} objects (${mib(r.gc.bytes)}) and ${r.gc.trees} listings`,
    );
  },
};

function humanChanges(changes: EtcChange[]): string {
  if (changes.length === 0) return 'no local changes';
  return changes
    .map((c) => [`${c.kind} /etc/${c.path}`, ...c.details, ...(c.diff ? [c.diff] : [])].join('\n'))
    .join('\n');
}

export const etcDiff: CommandSpec = {
  name: 'etc diff',
  summary: "Show the local changes of the running deployment's /etc against its defaults",
  description:
    "Compares the running (else the default) deployment's writable /etc with the defaults its tree shipped: what a deploy update carries over. Text files get a unified diff.",
  options: DEVICE_OPTIONS,
  json: true,
  examples: ['ferry etc diff', 'ferry etc diff --json'],
  async run(ctx) {
    const r = await (await openDeployments(ctx)).etcDiff();
    ctx.out.result(r, () => `deployment ${r.deployment}\n${humanChanges(r.changes)}`);
  },
};
