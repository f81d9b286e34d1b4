/** The options every device command takes, and how they become Agent.open's arguments. */
import { resolve } from 'node:path';
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
