/** The command table: every `ferry` command, in the order help lists them. */
import type { CommandSpec } from './command.ts';
import { bundleCreate, bundleInfo, bundleVerify } from './bundle-commands.ts';
import { demo } from './demo-command.ts';
import { demoFleet } from './fleet-demo-command.ts';
import {
  bootCheck,
  install,
  markActive,
  markBad,
  markGood,
  rollback,
  status,
} from './device-commands.ts';
import { activate, check, rebase, update } from './update-commands.ts';
import { reboot } from './reboot-command.ts';
import { daemon } from './daemon-commands.ts';
import { fleetCheckin, fleetStatus } from './fleet-commands.ts';
import {
  deployGc,
  deployInstall,
  deployMarkGood,
  deployPin,
  deployRollback,
  deployStatus,
  deployUnpin,
  deployUpdate,
  etcDiff,
} from './deploy-commands.ts';
import { repoDelta } from './delta-commands.ts';
import { server, sim } from './server-commands.ts';
import { imageBuild } from './image-commands.ts';
import {
  repoGc,
  repoInit,
  repoPromote,
  repoPublish,
  repoRefresh,
  repoKeysRotate,
  repoVerify,
} from './repo-commands.ts';
import { keyGenerate } from './key-commands.ts';

export const COMMANDS: CommandSpec[] = [
  imageBuild,
  bundleCreate,
  bundleInfo,
  bundleVerify,
  keyGenerate,
  repoInit,
  repoPublish,
  repoPromote,
  repoRefresh,
  repoKeysRotate,
  repoDelta,
  repoVerify,
  repoGc,
  status,
  install,
  check,
  update,
  activate,
  rebase,
  bootCheck,
  markGood,
  markBad,
  markActive,
  rollback,
  reboot,
  deployStatus,
  deployUpdate,
  deployInstall,
  deployRollback,
  deployMarkGood,
  deployPin,
  deployUnpin,
  deployGc,
  etcDiff,
  daemon,
  fleetCheckin,
  fleetStatus,
  server,
  sim,
  demo,
  demoFleet,
];
