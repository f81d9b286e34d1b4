export { main, findCommand } from './main.ts';
export { COMMANDS } from './commands.ts';
export { cliReference, commandHelp } from './help.ts';
export { Output, exitCodeFor } from './output.ts';
export type { CommandSpec } from './command.ts';
