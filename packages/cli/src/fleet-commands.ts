/** `ferry fleet checkin` and `ferry fleet status`: the device's side of the fleet server. */
import {
  FleetClient,
  loadFleetState,
  type AgentEvent,
  type FleetCycleResult,
  type FleetEvent,
} from '@ferry/agent';
import { FerryError } from '@ferry/core';
import { flag, type CommandSpec } from './command.ts';
import { openDevice } from './daemon-commands.ts';
import { DEVICE_OPTIONS, eventSink, loadDeviceConfig } from './device-options.ts';

function humanCycle(r: FleetCycleResult): string {
  const lines = [`device ${r.deviceId}: ${r.enrolment}`];
  if (r.enrolment === 'pending') lines.push('waiting for an admin to approve this device');
  if (r.settled) lines.push(`reported ${r.settled.state} for ${r.settled.version}`);
  const a = r.assignment;
  if (a) lines.push(`assigned ${a.version} (#${a.releaseCounter}) by rollout ${a.rolloutId}`);
  const i = r.installed;
  if (i)
    lines.push(
      `${i.staged ? 'staged' : 'installed'} ${i.version} into ${i.target}${i.staged ? '' : `; next boot tries ${i.bootname}`}`,
      `${i.seededBytes} bytes from local slots, ${i.presentBytes} already in place, ${i.fetchedBytes} fetched (${i.bundleBytesRead} bytes downloaded)`,
    );
  else if (r.action === 'waiting') lines.push('the assigned release waits for its reboot or check');
  else if (!a && r.enrolment === 'accepted') lines.push('no assignment: up to date');
  return lines.join('\n');
}

export const fleetCheckin: CommandSpec = {
  name: 'fleet checkin',
  summary: 'Check in with the fleet server now and install what its director assigns',
  description:
    "One cycle with the [server] of system.toml: enrols on first contact (with [server] token, or waits for an admin's approval), reports how the last assignment ended (committed after the new slot was marked good, rolled back when the old one runs again), sends the inventory, and installs the assigned release. The assignment must be signed by a key of [server] director-keyring, answer this very request, and match this device's own TUF view of the repository (same manifest hash, length, version and release counter, not older than the booted release); anything else is refused before a byte is written and reported as failed. Through the daemon when it runs (its reboot policy applies); otherwise nothing reboots.",
  options: {
    ...DEVICE_OPTIONS,
    stage: { type: 'boolean', description: 'write and verify, but do not make the slot primary' },
  },
  json: true,
  examples: ['ferry fleet checkin', 'ferry fleet checkin --json'],
  async run(ctx) {
    const dev = await openDevice(ctx);
    const sink = eventSink(ctx);
    const bar = ctx.out.progress('update');
    const onEvent = (e: AgentEvent | FleetEvent) => {
      sink?.(e as AgentEvent);
      if (e.id === 'install.progress') bar.update(e.done, e.total, `${e.phase} ${e.image}`);
    };
    try {
      if ('daemon' in dev) {
        if (flag(ctx, 'stage'))
          throw new FerryError('USAGE', 'the daemon runs: its [daemon] install policy decides');
        const o = await dev.daemon.cycle((e) => onEvent(e as AgentEvent));
        bar.done();
        ctx.out.result(o, () =>
          o.installed
            ? `installed ${o.installed.version} into ${o.installed.target} (reboot: ${o.reboot ?? 'none'})`
            : `${o.action}${o.check?.latest ? `: ${o.check.latest.version}` : ''}`,
        );
        return;
      }
      const r = await dev.agent.fleetCycle({
        onEvent,
        ...(flag(ctx, 'stage') ? { stage: true } : {}),
      });
      bar.done();
      ctx.out.result(r, () => humanCycle(r));
    } finally {
      bar.done();
    }
  },
};

export const fleetStatus: CommandSpec = {
  name: 'fleet status',
  summary: "This device's fleet identity, enrolment and assignment in progress",
  description:
    'Prints the device id (from the device key, created on first use), the fleet server, the enrolment, the assignment in progress with the last state reported, and the last outcome. Contacts nothing.',
  options: DEVICE_OPTIONS,
  json: true,
  examples: ['ferry fleet status --json'],
  async run(ctx) {
    const config = await loadDeviceConfig(ctx);
    if (!config.server)
      throw new FerryError('FLEET_NOT_CONFIGURED', `no [server] url in ${config.path}`);
    const client = await FleetClient.open(config.server);
    const s = await loadFleetState(config);
    const r = {
      deviceId: client.deviceId,
      server: config.server.url,
      enrolment: s.enrolment ?? 'not enrolled',
      ...(s.assignment ? { assignment: s.assignment } : {}),
      ...(s.lastOutcome ? { lastOutcome: s.lastOutcome } : {}),
      ...(s.lastCheckin ? { lastCheckin: s.lastCheckin } : {}),
    };
    ctx.out.result(r, () =>
      [
        `device ${r.deviceId} at ${r.server}: ${r.enrolment}`,
        s.assignment
          ? `working on ${s.assignment.version} (rollout ${s.assignment.rolloutId}): ${s.assignment.state}`
          : 'no assignment in progress',
        ...(s.lastOutcome
          ? [`last outcome: ${s.lastOutcome.version} ${s.lastOutcome.state} at ${s.lastOutcome.at}`]
          : []),
        ...(s.lastCheckin ? [`last check-in ${s.lastCheckin}`] : []),
      ].join('\n'),
    );
  },
};
