/**
 * Filesystem steps the deployment store shares: running the few tools Node cannot replace
 * (setfattr, mknod, sync -f), batched so a tree costs a handful of processes, not one per file;
 * and removing a tree whose directories may be read-only.
 */
import { spawn } from 'node:child_process';
import { chmod, lstat, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { FerryError } from '@ferry/core';

/** Runs `file args`, feeding `input` on stdin; TOOL_MISSING / TOOL_FAILED on failure. */
export function runTool(file: string, args: string[], input?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      stdio: [input === undefined ? 'ignore' : 'pipe', 'ignore', 'pipe'],
    });
    let errTail = '';
    child.stderr!.on('data', (d: Buffer) => {
      errTail = (errTail + d.toString()).slice(-2000);
    });
    child.on('error', (e: NodeJS.ErrnoException) =>
      reject(
        e.code === 'ENOENT'
          ? new FerryError('TOOL_MISSING', `${file} is not installed`)
          : new FerryError('TOOL_FAILED', `${file}: ${e.message}`, { cause: e }),
      ),
    );
    child.on('close', (code) => {
      if (code === 0) resolve();
      else reject(new FerryError('TOOL_FAILED', `${file} exited ${code}: ${errTail.trim()}`));
    });
    if (input !== undefined) child.stdin!.end(input);
  });
}

/** syncfs(2) on the filesystem holding `path`: one flush instead of an fsync per file. */
export function syncFs(path: string): Promise<void> {
  return runTool('sync', ['-f', path]);
}

/** getfattr/setfattr quoting: bytes outside printable ASCII, backslash and '=' as \ooo. */
function quote(s: string): string {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    const plain = b > 0x20 && b < 0x7f && b !== 0x5c && b !== 0x3d;
    out += plain ? String.fromCharCode(b) : `\\${b.toString(8).padStart(3, '0')}`;
  }
  return out;
}

/** A path and the xattrs (name -> base64) to set on it. */
export interface XattrTarget {
  path: string;
  xattrs: Record<string, string>;
}

/** Sets xattrs on many paths with one `setfattr -h --restore` (symlinks are never followed). */
export async function applyXattrs(targets: XattrTarget[]): Promise<void> {
  if (targets.length === 0) return;
  let dump = '';
  for (const t of targets) {
    dump += `# file: ${quote(t.path)}\n`;
    for (const [n, v] of Object.entries(t.xattrs)) dump += `${quote(n)}=0s${v}\n`;
    dump += '\n';
  }
  await runTool('setfattr', ['-h', '--restore=-'], dump);
}

/** Creates a device node or fifo (Node has no mknod). */
export function makeNode(
  path: string,
  type: 'char' | 'block' | 'fifo',
  major = 0,
  minor = 0,
): Promise<void> {
  const args =
    type === 'fifo'
      ? [path, 'p']
      : [path, type === 'char' ? 'c' : 'b', String(major), String(minor)];
  return runTool('mknod', args);
}

async function makeWritable(path: string): Promise<void> {
  const st = await lstat(path);
  if (!st.isDirectory()) return;
  await chmod(path, 0o700);
  for (const n of await readdir(path)) await makeWritable(join(path, n));
}

/** rm -rf that also works without root on a tree with read-only directories. */
export async function removeTree(path: string): Promise<void> {
  try {
    await rm(path, { recursive: true, force: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EACCES' && code !== 'EPERM') throw e;
    await makeWritable(path);
    await rm(path, { recursive: true, force: true });
  }
}
