/**
 * `ferry daemon` (the update daemon in the foreground), and the helpers that send the device
 * commands through a running daemon instead of touching the slots beside it.
 */
import {
  Agent,
  Daemon,
  DaemonClient,
  listenDaemonApi,
  probeDaemon,
  type DaemonStatus,
  type StampedEvent,
  type SystemConfig,
} from '@ferry/agent';
import { FerryError } from '@ferry/core';
import { type CommandContext, type CommandSpec } from './command.ts';
import { DEVICE_OPTIONS, deviceOpts, loadDeviceConfig } from './device-options.ts';

/**
 * A client of the daemon when one answers on the configured socket; undefined when none runs.
 * A socket that refuses access is DAEMON_UNAVAILABLE: going around a running daemon would put
 * two writers on the slots.
 * @example
 * const d = await viaDaemon(await loadConfig());
 * const r = d ? (await d.status()).system : await (await Agent.open()).status();
 */
export async function viaDaemon(
  config: Pick<SystemConfig, 'daemon'>,
): Promise<DaemonClient | undefined> {
  const socket = config.daemon.socket;
  const state = await probeDaemon(socket);
  if (state === 'denied')
    throw new FerryError(
      'DAEMON_UNAVAILABLE',
      `the daemon runs but its socket ${socket} refuses this user (run as root or join its group)`,
    );
  return state === 'up' ? new DaemonClient(socket) : undefined;
}

/** The device behind a command: the running daemon, or else the agent in this process. */
export async function openDevice(
  ctx: CommandContext,
): Promise<{ daemon: DaemonClient } | { agent: Agent }> {
  const config = await loadDeviceConfig(ctx);
  const daemon = await viaDaemon(config);
  return daemon ? { daemon } : { agent: await Agent.open(deviceOpts(ctx)) };
}

/** One human line about the daemon, for `ferry status` when it answered through the daemon. */
export function humanDaemonStatus(d: DaemonStatus): string {
  const parts = [
    `daemon ${d.state}`,
    `install ${d.policy.install}, reboot ${d.policy.reboot}${d.policy.window ? ` ${d.policy.window}` : ''}`,
  ];
  if (d.operation) parts.push(`running ${d.operation.kind} since ${d.operation.startedAt}`);
  if (d.staged) parts.push(`staged ${d.staged.version} in ${d.staged.slot}`);
  if (d.pending) parts.push(`${d.pending.version} in ${d.pending.slot} waits for a reboot`);
  if (d.rebootAt) parts.push(`reboot at ${d.rebootAt}`);
  if (d.lastCheck)
    parts.push(
      `last check ${d.lastCheck.at}: ${d.lastCheck.check.available ? `${d.lastCheck.check.latest?.version} available` : 'up to date'}`,
    );
  if (d.lastError) parts.push(`last error [${d.lastError.code}] ${d.lastError.message}`);
  if (d.nextCheckAt) parts.push(`next check ${d.nextCheckAt}`);
  return parts.join('; ');
}

/** JSON lines on stderr (the journal), with install progress thinned to one line per 5 s. */
function eventLogger(stderr: NodeJS.WritableStream): (e: StampedEvent | object) => void {
  let lastProgress = 0;
  return (e) => {
    const p = e as { id?: string; done?: number; total?: number };
    if (p.id === 'install.progress' && p.done !== p.total) {
      const now = Date.now();
      if (now - lastProgress < 5000) return;
      lastProgress = now;
    }
    stderr.write(`${JSON.stringify('time' in e ? e : { ...e, time: new Date().toISOString() })}\n`);
  };
}

/** Resolves on the first SIGTERM or SIGINT. */
function untilSignal(): Promise<string> {
  return new Promise((done) => {
    const on = (sig: string) => {
      process.off('SIGTERM', on);
      process.off('SIGINT', on);
      done(sig);
    };
    process.on('SIGTERM', on);
    process.on('SIGINT', on);
  });
}

export const daemon: CommandSpec = {
  name: 'daemon',
  summary: 'Run the update daemon: check, download, install and reboot per policy; serve the API',
  description:
    'Runs in the foreground (ferry-daemon.service). Checks the repository every [daemon] interval seconds plus up to [daemon] jitter, installs per [daemon] install (auto, download-only, ask) and reboots per [daemon] reboot (now, window, never). Serves the local API on [daemon] socket, which ferry status, check, update, install, mark-*, rollback and rebase use while the daemon runs. Logs JSON lines to stderr. SIGTERM aborts the running download and stops.',
  options: DEVICE_OPTIONS,
  examples: ['ferry daemon', 'ferry daemon --root /tmp/fake-device'],
  async run(ctx) {
    const log = eventLogger(ctx.out.stderr);
    const agent = await Agent.open(deviceOpts(ctx));
    const d = new Daemon(agent);
    d.subscribe(log);
    const stopped = untilSignal();
    const api = await listenDaemonApi(d, agent.config.daemon.socket);
    log({ id: 'daemon.listening', socket: api.socket });
    try {
      await d.start();
      log({ id: 'daemon.signal', signal: await stopped });
    } finally {
      await d.stop();
      await api.close();
    }
  },
};
