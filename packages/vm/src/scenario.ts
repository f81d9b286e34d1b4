/**
 * Shared steps of the VM scenarios: a fresh copy of the provisioned disk per run, the guest
 * commands, boot waits with generous bounds (TCG on a loaded 2-core host) and a timing summary.
 */
import { spawnSync } from 'node:child_process';
import { appendFileSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { AgentState } from '@ferry/agent';
import { ensureArtefacts, type Artefacts } from './artefacts.ts';
import { readAgentState, readGrubEnvVars } from './disk-state.ts';
import { Vm } from './qemu.ts';

/** Bound of each stage of a boot (about 35 s for a whole boot on an idle 2-core host; 170 s seen at load 12). */
export const BOOT_MS = 300_000;

/**
 * The command the guest runs to update from `url` (`json`: events as JSON lines). The one line
 * to change when the scenarios move to `ferry update` from a repository.
 */
export function updateCommand(url: string, json = false): string {
  return `ferry install${json ? ' --json' : ''} ${url}`;
}

/** One scenario's working directory, disk copy and console log. */
export interface Run {
  name: string;
  dir: string;
  disk: string;
  log: string;
  artefacts: Artefacts;
  started: number;
}

/**
 * Builds (or reuses) the artefacts (`build`: the BIOS disk's by default) and gives `name` its
 * own sparse copy of the provisioned disk.
 *
 * @example
 * const run = await prepareRun('s1');
 * const vm = Vm.start(run);
 */
export async function prepareRun(
  name: string,
  build: () => Promise<Artefacts> = ensureArtefacts,
): Promise<Run> {
  const artefacts = await build();
  const dir = join(artefacts.cache, 'runs', name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const disk = join(dir, 'disk.img');
  const cp = spawnSync('cp', ['--sparse=always', '--reflink=auto', artefacts.disk, disk]);
  if (cp.status !== 0) throw new Error(`cp of the disk failed: ${cp.stderr.toString()}`);
  return { name, dir, disk, log: join(dir, 'console.log'), artefacts, started: Date.now() };
}

/** What one boot showed on the console. */
export interface Boot {
  slot: string;
  grub: string;
  release: string;
  bootCheckRc: number;
}

/**
 * Waits for the next complete boot: GRUB's slot choice, the root's init line, the boot check's
 * exit status and the shell prompt, each within `timeoutMs` of the one before (a loaded host
 * stretches the kernel's start alone past two minutes). Lines before `from` are ignored.
 */
export async function waitBoot(vm: Vm, from = vm.mark(), timeoutMs = BOOT_MS): Promise<Boot> {
  const grub = await vm.waitFor(/^FERRY-GRUB: slot=(\w+) (.*)$/, timeoutMs, from);
  const init = await vm.waitFor(/^FERRY-INIT: up release=(\S+)/, timeoutMs, from);
  const rc = await vm.waitFor(/^FERRY-BOOT-CHECK: rc=(\d+)/, timeoutMs, from);
  await vm.waitFor(/^FERRY-SHELL: ready/, timeoutMs, from);
  return {
    slot: grub[1] ?? '',
    grub: grub[2] ?? '',
    release: init[1] ?? '',
    bootCheckRc: Number(rc[1]),
  };
}

/** Runs `cmd` in the guest and parses its stdout as JSON (the last `{`-line onwards). */
export async function guestJson(vm: Vm, cmd: string, timeoutMs = 120_000): Promise<unknown> {
  const { rc, output } = await vm.run(cmd, timeoutMs);
  const start = output.findIndex((l) => l.startsWith('{'));
  if (rc !== 0 || start < 0) throw new Error(`${cmd}: rc ${rc}\n${output.join('\n')}`);
  return JSON.parse(output.slice(start).join('\n'));
}

/** Device state read from the disk on the host (qemu stopped, or guest idle after sync). */
export function deviceState(run: Run): { grub: Record<string, string>; state: AgentState } {
  return {
    grub: readGrubEnvVars(run.disk, run.artefacts.layout),
    state: readAgentState(run.disk, run.artefacts.layout),
  };
}

/** Appends `name: seconds` to `<cache>/runs/timings.txt` and returns the line. */
export function recordTiming(run: Run, extra = ''): string {
  const line = `${run.name}: ${((Date.now() - run.started) / 1000).toFixed(1)} s${extra ? ` (${extra})` : ''}`;
  appendFileSync(
    join(run.artefacts.cache, 'runs', 'timings.txt'),
    `${new Date().toISOString()} ${line}\n`,
  );
  return line;
}
