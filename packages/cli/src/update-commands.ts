/** Updating from a repository: check, update, activate, rebase. Thin wrappers over Agent. */
import type { AgentEvent, DaemonClient, UpdateCheck, UpdateResult } from '@ferry/agent';
import { FerryError } from '@ferry/core';
import { flag, type CommandSpec } from './command.ts';
import { openDevice } from './daemon-commands.ts';
import { DEVICE_OPTIONS, eventSink } from './device-options.ts';
import { bootsDeployments, deployUpdate } from './deploy-commands.ts';

/** `ferry update` through a running daemon, answered in the shape of Agent.update. */
async function viaDaemonUpdate(
  daemon: DaemonClient,
  onEvent: (e: AgentEvent) => void,
): Promise<UpdateResult> {
  const o = await daemon.install({ reboot: false }, (e) => onEvent(e as AgentEvent));
  const check = o.check ?? { channel: '', available: false };
  return {
    check,
    ...(o.installed ? { installed: o.installed } : {}),
    staged: o.action === 'staged',
  };
}

function humanCheck(c: UpdateCheck): string {
  const cur = c.current ? `${c.current.version} (#${c.current.releaseCounter})` : 'unknown';
  const latest = c.latest ? `${c.latest.version} (#${c.latest.releaseCounter})` : 'none';
  const verdict = c.available
    ? 'an update is available'
    : c.ready
      ? `the latest release is already ${c.ready === 'pending' ? 'installed and waits for a reboot' : 'staged'}`
      : 'up to date';
  return `channel ${c.channel}: booted ${cur}, latest ${latest}: ${verdict}`;
}

export const check: CommandSpec = {
  name: 'check',
  summary: 'Ask the repository for the newest release of the followed channel',
  description:
    "Refreshes the TUF metadata of the [update] repository with the trusted root (rollback, freeze and mix-and-match checks), reads the channel index for this device's compatible, and verifies the newest release's manifest against the bundle keyring. Writes nothing but trusted metadata.",
  options: DEVICE_OPTIONS,
  json: true,
  examples: ['ferry check', 'ferry check --json'],
  async run(ctx) {
    const dev = await openDevice(ctx);
    const c = 'daemon' in dev ? await dev.daemon.check() : await dev.agent.check();
    ctx.out.result(c, () => humanCheck(c));
  },
};

export const update: CommandSpec = {
  name: 'update',
  summary: 'Install the newest release of the followed channel from the repository',
  description:
    'On a device that boots deployments ([deploy] boot set) this is `ferry deploy update`. Otherwise: runs check; if a newer release exists, writes it into the inactive slot fetching only the chunks no local slot holds (parallel keep-alive connections, each chunk verified before it is written, byte caps, timeouts, minimum rate and bandwidth limit from [update]), reads it back and makes it primary. An interrupted update re-run keeps every chunk already written. --stage writes and verifies but leaves the bootloader alone (activate later with `ferry activate`).',
  options: {
    ...DEVICE_OPTIONS,
    stage: { type: 'boolean', description: 'write and verify, but do not make the slot primary' },
    'progress-fd': {
      type: 'string',
      placeholder: 'N',
      description: 'also write JSON-lines events to file descriptor N',
    },
  },
  json: true,
  examples: ['ferry update', 'ferry update --stage --json'],
  async run(ctx) {
    if (await bootsDeployments(ctx)) {
      if (ctx.values.stage === true)
        throw new FerryError(
          'USAGE',
          '--stage is for slots; a deployment is staged until it boots',
        );
      return deployUpdate.run(ctx);
    }
    const dev = await openDevice(ctx);
    const sink = eventSink(ctx);
    const bar = ctx.out.progress('update');
    const onEvent = (e: AgentEvent) => {
      sink?.(e);
      if (e.id === 'install.progress') bar.update(e.done, e.total, `${e.phase} ${e.image}`);
    };
    try {
      if ('daemon' in dev && flag(ctx, 'stage'))
        throw new FerryError(
          'USAGE',
          'the daemon runs: its [daemon] install policy decides whether to stage',
        );
      const r =
        'daemon' in dev
          ? await viaDaemonUpdate(dev.daemon, onEvent)
          : await dev.agent.update({ stage: flag(ctx, 'stage'), onEvent });
      bar.done();
      const i = r.installed;
      ctx.out.result({ id: 'update.result', ok: true, ...r }, () =>
        i
          ? `${r.staged ? 'staged' : 'installed'} ${i.version} (#${i.releaseCounter}) into ${i.target}${r.staged ? '' : `; next boot tries ${i.bootname}`}\n${i.seededBytes} bytes from local slots, ${i.presentBytes} already in place, ${i.fetchedBytes} fetched (${i.bundleBytesRead} bytes downloaded)`
          : humanCheck(r.check),
      );
    } finally {
      bar.done();
    }
  },
};

export const activate: CommandSpec = {
  name: 'activate',
  summary: 'Make a staged update the primary slot (the commit point `update --stage` left out)',
  options: DEVICE_OPTIONS,
  json: true,
  examples: ['ferry activate'],
  async run(ctx) {
    const dev = await openDevice(ctx);
    const r =
      'daemon' in dev
        ? await dev.daemon.install({ reboot: false }).then((o) => {
            if (o.action !== 'committed' || !o.installed)
              throw new FerryError('UPDATE_NOTHING_STAGED', 'no staged update to activate');
            return { slot: o.installed.target, bootname: o.installed.bootname };
          })
        : await dev.agent.activateStaged();
    ctx.out.result(r, () => `${r.slot} is primary; next boot tries ${r.bootname}`);
  },
};

export const rebase: CommandSpec = {
  name: 'rebase',
  summary: 'Follow another channel (stable, beta, nightly...) from the next check on',
  positionals: [{ name: 'CHANNEL', description: 'channel name' }],
  options: DEVICE_OPTIONS,
  json: true,
  examples: ['ferry rebase beta', 'ferry rebase stable && ferry update'],
  async run(ctx) {
    const channel = ctx.positionals[0]!;
    const dev = await openDevice(ctx);
    if ('daemon' in dev) await dev.daemon.rebase(channel);
    else await dev.agent.rebase(channel);
    ctx.out.result({ channel }, () => `following channel ${channel}`);
  },
};
