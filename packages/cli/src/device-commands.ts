/** Device commands: status, install, boot-check, mark-*, rollback. Thin wrappers over Agent. */
import { resolve } from 'node:path';
import { Agent, FleetSession, type AgentEvent, type StatusReport } from '@ferry/agent';
import { FerryError } from '@ferry/core';
import { flag, type CommandContext, type CommandSpec } from './command.ts';
import { humanDaemonStatus, openDevice } from './daemon-commands.ts';
import { deploymentBootCheck, humanChecks } from './deploy-boot-check.ts';
import {
  bootsDeployments,
  deployInstall,
  deployRollback,
  deployStatus,
} from './deploy-commands.ts';
import { DEVICE_OPTIONS, deviceOpts, eventSink } from './device-options.ts';

export { DEVICE_OPTIONS, eventSink };

export function openAgent(ctx: CommandContext): Promise<Agent> {
  return Agent.open(deviceOpts(ctx));
}

function humanStatus(r: StatusReport): string {
  const lines = [
    `compatible ${r.compatible}, bootloader ${r.bootloader}, booted ${r.booted ? `${r.booted.slot} (${r.booted.source})` : 'unknown'}${r.bootloaderBooted ? ` (the bootloader says ${r.bootloaderBooted})` : ''}, primary ${r.primary ?? 'none'}`,
  ];
  lines.push(
    `release counter floor ${r.highWaterCounter}, installs ${r.installCount}${r.pendingSlot ? `, ${r.pendingSlot} on trial` : ''}`,
  );
  for (const s of r.slots) {
    const marks = [s.booted ? 'booted' : '', s.primary ? 'primary' : ''].filter(Boolean).join(',');
    const boot = s.boot
      ? `${s.boot.state}${s.boot.attemptsLeft !== undefined ? ` (${s.boot.attemptsLeft} tries left)` : ''}`
      : '-';
    const rel = s.record?.release
      ? `${s.record.release.version} #${s.record.release.releaseCounter}`
      : (s.record?.status ?? 'unknown');
    lines.push(
      `  ${s.name.padEnd(10)} ${(s.bootname ?? '').padEnd(3)} ${boot.padEnd(22)} ${rel.padEnd(18)} ${marks}`,
    );
  }
  if (r.lastInstall)
    lines.push(
      `last install ${r.lastInstall.at}: ${r.lastInstall.result}${r.lastInstall.release ? ` ${r.lastInstall.release}` : ''}${r.lastInstall.error ? ` [${r.lastInstall.error.code}] ${r.lastInstall.error.message}` : ''}`,
    );
  if (r.lastRollback)
    lines.push(
      `last rollback ${r.lastRollback.at}: ${r.lastRollback.from} -> ${r.lastRollback.to}: ${r.lastRollback.reason}`,
    );
  return lines.join('\n');
}

export const status: CommandSpec = {
  name: 'status',
  summary: 'Show slots, booted and primary slot, boot states and installed releases',
  options: DEVICE_OPTIONS,
  json: true,
  examples: ['ferry status', 'ferry status --json --root /tmp/fake-device'],
  async run(ctx) {
    if (await bootsDeployments(ctx)) return deployStatus.run(ctx);
    const dev = await openDevice(ctx);
    if ('daemon' in dev) {
      const r = await dev.daemon.status();
      ctx.out.result(
        { ...r.system, daemon: r.daemon },
        () => `${humanStatus(r.system)}\n${humanDaemonStatus(r.daemon)}`,
      );
      return;
    }
    const r = await dev.agent.status();
    ctx.out.result(r, () => humanStatus(r));
  },
};

export const install: CommandSpec = {
  name: 'install',
  summary: 'Install a bundle (file or URL) into the inactive slot, reusing local chunks',
  description:
    'Verifies the signature threshold, compatible and release counter first; then streams the images into the inactive slots chunk by chunk, taking every chunk the device already holds from its local images and only the rest from the bundle (HTTP range requests for a URL), verifying each chunk before it is written; reads the slot back (SHA-256 and dm-verity root), and only then makes it the primary with a limited number of boot attempts. Never writes to the booted slot.',
  positionals: [{ name: 'BUNDLE', description: 'bundle file or http(s) URL' }],
  options: {
    ...DEVICE_OPTIONS,
    'progress-fd': {
      type: 'string',
      placeholder: 'N',
      description: 'also write JSON-lines events to file descriptor N',
    },
  },
  json: true,
  examples: [
    'ferry install /media/usb/gw-1.3.0.fbd',
    'ferry install --json https://updates.example.com/gw-1.3.0.fbd',
  ],
  async run(ctx) {
    if (await bootsDeployments(ctx)) return deployInstall.run(ctx);
    const dev = await openDevice(ctx);
    const sink = eventSink(ctx);
    const bar = ctx.out.progress('install');
    const onEvent = (e: AgentEvent) => {
      sink?.(e);
      if (e.id === 'install.progress') bar.update(e.done, e.total, `${e.phase} ${e.image}`);
    };
    try {
      const src = ctx.positionals[0]!;
      const r =
        'daemon' in dev
          ? // The daemon runs in another working directory: send it an absolute path.
            (
              await dev.daemon.install(
                { source: /^https?:\/\//.test(src) ? src : resolve(src) },
                (e) => onEvent(e as AgentEvent),
              )
            ).installed!
          : await dev.agent.install(src, onEvent);
      bar.done();
      ctx.out.result(
        { id: 'install.result', ok: true, ...r },
        () =>
          `installed ${r.version} (#${r.releaseCounter}) into ${r.target}; next boot tries ${r.bootname}\n${r.seededBytes} bytes from local slots, ${r.fetchedBytes} from the bundle (${r.bundleBytesRead} bundle bytes read)`,
      );
    } finally {
      bar.done();
    }
  },
};

export const bootCheck: CommandSpec = {
  name: 'boot-check',
  summary:
    'After boot: run health checks, then mark the booted slot (or deployment) good, or bad and reboot',
  description:
    'Runs every executable in the health directory with a timeout. All pass: the booted slot is marked good (committed). One fails: the slot is marked bad and the device reboots into the fallback (by [system] reboot-method, see ferry reboot), unless there is no good fallback (then it stays, degraded). Also notices and records when the bootloader already fell back from a newly installed slot. On a device that boots deployments ([deploy] boot set), the same is done for the running deployment: a failed check makes the previous deployment the default and reboots, and a fallback by the bootloader makes the running deployment the default again. Run it once per boot from ferry-boot-check.service.',
  options: {
    ...DEVICE_OPTIONS,
    'no-reboot': { type: 'boolean', description: 'mark bad but do not reboot' },
  },
  json: true,
  async run(ctx) {
    const sink = eventSink(ctx);
    const reboot = !flag(ctx, 'no-reboot');
    const viaDeployments = await deploymentBootCheck(ctx, {
      ...(reboot ? { reboot: async () => (await openAgent(ctx)).rebootNow() } : {}),
      ...(sink ? { onEvent: sink } : {}),
    });
    if (viaDeployments) return;
    const agent = await openAgent(ctx);
    // The fleet server hears the outcome before a reboot into the fallback, when it can.
    const r = await agent.bootCheck({
      reboot: false,
      ...(sink ? { onEvent: sink } : {}),
    });
    const reported = agent.config.server
      ? await new FleetSession(agent)
          .reportOutcome(sink as Parameters<FleetSession['reportOutcome']>[0])
          .catch((e: unknown) => ({ error: (e as Error).message }))
      : undefined;
    if (reported && 'error' in reported)
      ctx.out.stderr.write(`fleet server not told yet (next check-in will): ${reported.error}\n`);
    // Printed before the reboot: the console keeps why the slot was given up.
    ctx.out.result(r, () =>
      [
        ...(r.fellBackFrom
          ? [`fell back: ${r.fellBackFrom} did not come up, running ${r.slot}`]
          : []),
        ...humanChecks(r.checks),
        `${r.slot}: ${r.result}`,
      ].join('\n'),
    );
    if (r.result === 'bad' && reboot) await agent.rebootNow();
    if (r.result === 'bad')
      throw new FerryError(
        'HEALTH_CHECK_FAILED',
        `${r.slot} marked bad: ${r.checks.find((c) => !c.ok)?.detail ?? ''}`,
      );
  },
};

function markCommand(action: 'good' | 'bad' | 'active'): CommandSpec {
  const what = {
    good: 'Mark a slot good (commit it)',
    bad: 'Mark a slot bad (never boot it)',
    active: 'Make a slot the primary, with boot attempts',
  }[action];
  return {
    name: `mark-${action}`,
    summary: what,
    positionals: [
      {
        name: 'SLOT',
        description: 'booted, other, a slot name (rootfs.1) or a bootname (B); default booted',
        optional: true,
      },
    ],
    options: DEVICE_OPTIONS,
    json: true,
    async run(ctx) {
      const dev = await openDevice(ctx);
      const r =
        'daemon' in dev
          ? await dev.daemon.mark(action, ctx.positionals[0])
          : await dev.agent.mark(ctx.positionals[0] ?? 'booted', action).then((slot) => ({
              slot: slot.name,
              bootname: slot.bootname,
              marked: action,
            }));
      ctx.out.result(r, () => `marked ${r.slot} (${r.bootname}) ${action}`);
    },
  };
}

export const markGood = markCommand('good');
export const markBad = markCommand('bad');
export const markActive = markCommand('active');

export const rollback: CommandSpec = {
  name: 'rollback',
  summary: 'Make the other good slot primary (optionally reboot into it)',
  description:
    'On a device that boots deployments ([deploy] boot set) it makes the previous deployment, or ID, the default, as `ferry deploy rollback` does.',
  positionals: [{ name: 'ID', description: 'deployments only: a kept deployment', optional: true }],
  options: {
    ...DEVICE_OPTIONS,
    reboot: {
      type: 'boolean',
      description: 'reboot afterwards, by [system] reboot-method (see ferry reboot)',
    },
  },
  json: true,
  async run(ctx) {
    if (await bootsDeployments(ctx)) {
      await deployRollback.run(ctx);
      if (flag(ctx, 'reboot')) await (await openAgent(ctx)).rebootNow();
      return;
    }
    if (ctx.positionals.length > 0)
      throw new FerryError('USAGE', 'rollback takes an ID only on a device that boots deployments');
    const dev = await openDevice(ctx);
    const r = 'daemon' in dev ? await dev.daemon.rollback() : await dev.agent.rollback();
    ctx.out.result(r, () => `rollback: next boot runs ${r.to} instead of ${r.from}`);
    // Rebooting touches no slot: done here even when the daemon made the switch.
    if (flag(ctx, 'reboot')) await (await openAgent(ctx)).rebootNow();
  },
};
