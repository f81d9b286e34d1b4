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

/**
 * The bytes of file `path` on the FAT boot partition (the ESP of a UEFI disk), read with mtools
 * at the partition's offset in `disk`; undefined if it does not exist.
 */
export function readEspFile(disk: string, layout: DiskLayout, path: string): Buffer | undefined {
  const p = layout.boot;
  if (!p) throw new Error('no boot partition in the layout');
  const r = spawnSync('mtype', ['-i', `${disk}@@${p.offset}`, `::${path}`], {
    env: { ...process.env, MTOOLS_SKIP_CHECK: '1' },
  });
  if (r.status !== 0) {
    if (/not found/i.test(r.stderr.toString())) return undefined;
    throw new Error(`mtype ::${path} failed: ${r.stderr.toString()}`);
  }
  return r.stdout;
}

/** Names in directory `dir` of the FAT boot partition (mdir), sorted; [] if it does not exist. */
export function listEspDir(disk: string, layout: DiskLayout, dir: string): string[] {
  const p = layout.boot;
  if (!p) throw new Error('no boot partition in the layout');
  const r = spawnSync('mdir', ['-b', '-i', `${disk}@@${p.offset}`, `::${dir}`], {
    encoding: 'utf8',
    env: { ...process.env, MTOOLS_SKIP_CHECK: '1' },
  });
  if (r.status !== 0) {
    if (/not found/i.test(r.stderr)) return [];
    throw new Error(`mdir ::${dir} failed: ${r.stderr}`);
  }
  return r.stdout
    .split('\n')
    .map((l) => l.trim().split('/').at(-1) ?? '')
    .filter((n) => n !== '' && n !== '.' && n !== '..')
    .sort();
}

function grubVars(block: Buffer): Record<string, string> {
  const env = GrubEnv.parse(block);
  const vars: Record<string, string> = {};
  for (const name of ['ORDER', 'A_OK', 'B_OK', 'A_LEFT', 'B_LEFT']) {
    const v = env.get(name);
    if (v !== undefined) vars[name] = v;
  }
  return vars;
}

/** The GRUB environment block (`/grub/grubenv` on the boot partition) as name -> value. */
export function readGrubEnvVars(disk: string, layout: DiskLayout): Record<string, string> {
  const block = readPartitionFile(disk, layout, 'boot', '/grub/grubenv');
  if (!block) throw new Error('no /grub/grubenv on the boot partition');
  return grubVars(block);
}

/** The same, from the ESP (FAT) of a UEFI disk. */
export function readEspGrubEnvVars(disk: string, layout: DiskLayout): Record<string, string> {
  const block = readEspFile(disk, layout, '/grub/grubenv');
  if (!block) throw new Error('no /grub/grubenv on the ESP');
  return grubVars(block);
}

/** The agent's state (`/ferry/state.json` on the data partition), validated. */
export function readAgentState(disk: string, layout: DiskLayout): AgentState {
  const bytes = readPartitionFile(disk, layout, 'data', '/ferry/state.json');
  if (!bytes) throw new Error('no /ferry/state.json on the data partition');
  return checkState(JSON.parse(bytes.toString('utf8')));
}
