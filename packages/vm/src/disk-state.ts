/**
 * Device state read back from a VM disk image on the host, after qemu has exited (or while the
 * guest is idle after `sync`): the GRUB environment block on the boot partition and the agent's
 * state on the data partition. Each filesystem is copied out at its offset, its journal replayed
 * on the copy, and read with debugfs, so nothing is mounted.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GrubEnv, checkState, type AgentState } from '@ferry/agent';

/** Partition name -> byte offset and size, as build-disk.sh writes them to `<disk>.layout`. */
export type DiskLayout = Record<string, { offset: number; size: number }>;

/** Reads `<disk>.layout` (`name offset size` lines). */
export function readLayout(file: string): DiskLayout {
  const layout: DiskLayout = {};
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const [name, offset, size] = line.trim().split(/\s+/);
    if (name && offset && size) layout[name] = { offset: Number(offset), size: Number(size) };
  }
  return layout;
}

/** The bytes of file `path` inside partition `part` of `disk`; undefined if it does not exist. */
export function readPartitionFile(
  disk: string,
  layout: DiskLayout,
  part: string,
  path: string,
): Buffer | undefined {
  const p = layout[part];
  if (!p) throw new Error(`no partition ${part} in the layout`);
  const dir = mkdtempSync(join(tmpdir(), 'ferry-vm-part-'));
  try {
    const fs = join(dir, 'part.fs');
    const dd = spawnSync('dd', [
      `if=${disk}`,
      `of=${fs}`,
      'bs=1M',
      'iflag=skip_bytes,count_bytes',
      `skip=${p.offset}`,
      `count=${p.size}`,
      'conv=sparse',
      'status=none',
    ]);
    if (dd.status !== 0) throw new Error(`dd of ${part} failed: ${dd.stderr.toString()}`);
    // After a power cut the journal holds the last writes: replay it (on the copy) as the
    // guest kernel will at its next mount; debugfs alone would show the stale tree.
    const fsck = spawnSync('e2fsck', ['-y', '-E', 'journal_only', fs], { encoding: 'utf8' });
    if ((fsck.status ?? 8) > 2) throw new Error(`e2fsck of ${part} failed: ${fsck.stdout}`);
    const out = join(dir, 'out');
    const r = spawnSync('debugfs', ['-R', `dump ${path} ${out}`, fs], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`debugfs failed: ${r.stderr}`);
    try {
      return readFileSync(out);
    } catch {
      return undefined;
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The GRUB environment block (`/grub/grubenv` on the boot partition) as name -> value. */
export function readGrubEnvVars(disk: string, layout: DiskLayout): Record<string, string> {
  const block = readPartitionFile(disk, layout, 'boot', '/grub/grubenv');
  if (!block) throw new Error('no /grub/grubenv on the boot partition');
  const env = GrubEnv.parse(block);
  const vars: Record<string, string> = {};
  for (const name of ['ORDER', 'A_OK', 'B_OK', 'A_LEFT', 'B_LEFT']) {
    const v = env.get(name);
    if (v !== undefined) vars[name] = v;
  }
  return vars;
}

/** The agent's state (`/ferry/state.json` on the data partition), validated. */
export function readAgentState(disk: string, layout: DiskLayout): AgentState {
  const bytes = readPartitionFile(disk, layout, 'data', '/ferry/state.json');
  if (!bytes) throw new Error('no /ferry/state.json on the data partition');
  return checkState(JSON.parse(bytes.toString('utf8')));
}
