/** The options every device command takes, and how they become Agent.open's arguments. */
import { createWriteStream } from 'node:fs';
import { resolve } from 'node:path';
import { loadConfig, type AgentEvent, type SystemConfig } from '@ferry/agent';
import { FerryError } from '@ferry/core';
import { str, type CommandContext, type OptionSpec } from './command.ts';

export const DEVICE_OPTIONS: Record<string, OptionSpec> = {
  config: {
    type: 'string',
    placeholder: 'FILE',
    description: 'device configuration',
    default: '<root>/etc/ferry/system.toml',
  },
  root: {
    type: 'string',
    placeholder: 'DIR',
    description:
      'system root every configured path is resolved against (tests, file-backed devices)',
    default: '/ or $FERRY_ROOT',
  },
};

/** --config and --root as absolute paths, for Agent.open. */
export function deviceOpts(ctx: CommandContext): { configPath?: string; root?: string } {
  const configPath = str(ctx, 'config');
  const root = str(ctx, 'root');
  return {
    ...(configPath ? { configPath: resolve(configPath) } : {}),
    ...(root ? { root: resolve(root) } : {}),
  };
}

/** The device configuration --config and --root name. */
export function loadDeviceConfig(ctx: CommandContext): Promise<SystemConfig> {
  const o = deviceOpts(ctx);
  return loadConfig({
    ...(o.configPath ? { path: o.configPath } : {}),
    ...(o.root ? { root: o.root } : {}),
  });
}

/** Events as JSON lines: on stdout under --json, and on --progress-fd N for UIs. */
export function eventSink(ctx: CommandContext): ((e: AgentEvent) => void) | undefined {
  const fd = str(ctx, 'progress-fd');
  const sinks: Array<(line: string) => void> = [];
  if (ctx.out.json) sinks.push((l) => ctx.out.stdout.write(l));
  if (fd !== undefined) {
    if (!/^\d+$/.test(fd))
      throw new FerryError('USAGE', '--progress-fd wants a file descriptor number');
    const stream = createWriteStream('', { fd: Number(fd) });
    sinks.push((l) => stream.write(l));
  }
  if (sinks.length === 0) return undefined;
  return (e) => {
    const line = `${JSON.stringify({ ...e, time: new Date().toISOString() })}\n`;
    for (const s of sinks) s(line);
  };
}
