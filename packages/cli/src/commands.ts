/** The command table: every `ferry` command, in the order help lists them. */
import type { CommandSpec } from './command.ts';
import { bundleCreate, bundleInfo, bundleVerify } from './bundle-commands.ts';
import { demo } from './demo-command.ts';
import { imageBuild } from './image-commands.ts';
import { keyGenerate } from './key-commands.ts';

export const COMMANDS: CommandSpec[] = [
  imageBuild,
  bundleCreate,
  bundleInfo,
  bundleVerify,
  keyGenerate,
  demo,
];
