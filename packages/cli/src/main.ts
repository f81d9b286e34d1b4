/**
 * `ferry`: the command-line entry point. Finds the command in the table, parses its options,
 * runs it, and maps errors to one line and an exit status.
 */
import { parseArgs } from 'node:util';
import { FerryError } from '@ferry/core';
import { COMMANDS } from './commands.ts';
import type { CommandSpec } from './command.ts';
import { commandHelp, overviewHelp } from './help.ts';
import { Output } from './output.ts';

/** Splits argv into the longest matching command name and the rest. */
export function findCommand(argv: string[]): {
  spec: CommandSpec | undefined;
  rest: string[];
  words: string[];
} {
  const words: string[] = [];
  for (const a of argv) {
    if (a.startsWith('-')) break;
    words.push(a);
  }
  for (let n = words.length; n > 0; n--) {
    const name = words.slice(0, n).join(' ');
    const spec = COMMANDS.find((c) => c.name === name);
    if (spec) return { spec, rest: argv.slice(n), words };
  }
  return { spec: undefined, rest: argv, words };
}

function parse(spec: CommandSpec, rest: string[]) {
  const options: Record<
    string,
    { type: 'string' | 'boolean'; multiple?: boolean; short?: string }
  > = {
    help: { type: 'boolean', short: 'h' },
  };
  if (spec.json) options.json = { type: 'boolean' };
  for (const [k, o] of Object.entries(spec.options ?? {}))
    options[k] = {
      type: o.type,
      ...(o.multiple ? { multiple: true } : {}),
      ...(o.short ? { short: o.short } : {}),
    };
  try {
    return parseArgs({ args: rest, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new FerryError('USAGE', `${(e as Error).message} (see 'ferry ${spec.name} --help')`);
  }
}

/** Runs the CLI and returns the exit status. */
export async function main(
  argv: string[],
  out = new Output(argv.includes('--json')),
): Promise<number> {
  try {
    const { spec, rest, words } = findCommand(argv);
    if (!spec) {
      if (
        words.length === 0 ||
        argv.includes('--help') ||
        argv.includes('-h') ||
        words[0] === 'help'
      ) {
        out.stdout.write(overviewHelp(COMMANDS));
        return words.length === 0 && !argv.includes('--help') && !argv.includes('-h') ? 2 : 0;
      }
      throw new FerryError('USAGE', `unknown command '${words.join(' ')}' (see 'ferry --help')`);
    }
    const { values, positionals } = parse(spec, rest);
    if (values.help) {
      out.stdout.write(commandHelp(spec));
      return 0;
    }
    const required = (spec.positionals ?? []).filter((p) => !p.optional).length;
    if (positionals.length < required)
      throw new FerryError(
        'USAGE',
        `missing ${spec.positionals![positionals.length]!.name} (see 'ferry ${spec.name} --help')`,
      );
    const out2 = new Output(values.json === true, out.stdout, out.stderr);
    await spec.run({ values, positionals, out: out2 });
    return 0;
  } catch (e) {
    return out.error(e);
  }
}

if (import.meta.main) {
  process.exitCode = await main(process.argv.slice(2));
}
