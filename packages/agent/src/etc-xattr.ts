/**
 * Extended attributes of an /etc tree, through getfattr/setfattr (package `attr`): one
 * `getfattr -R` per tree to read, one `setfattr --restore` per output tree to write. Both run
 * with -h (never dereference a symlink) and -P (never walk into a symlinked directory).
 */
import { spawn, spawnSync } from 'node:child_process';
import { relative } from 'node:path';
import { FerryError } from '@ferry/core';
import type { EtcTree } from './etc-tree.ts';

/** name → hex value ("0x..."), per path relative to the tree root. */
export type XattrMap = Map<string, [name: string, hex: string][]>;

/** Bound on getfattr output: a hostile tree could carry huge attribute values. */
const MAX_DUMP_BYTES = 64 * 1024 * 1024;

/** Whether getfattr and setfattr are installed. */
export function haveXattrTools(): boolean {
  const ok = (t: string) => spawnSync(t, ['--version'], { stdio: 'ignore' }).status === 0;
  return ok('getfattr') && ok('setfattr');
}

function run(cmd: string, args: string[], opts: { cwd?: string; input?: string }): Promise<string> {
  return new Promise((resolve, reject) => {
    const stdin = opts.input === undefined ? 'ignore' : 'pipe';
    const child = spawn(cmd, args, { cwd: opts.cwd, stdio: [stdin, 'pipe', 'pipe'] });
    // A tool that exits early closes its stdin (EPIPE); its exit status tells what happened.
    child.stdin?.on('error', () => {});
    const out: Buffer[] = [];
    let size = 0;
    let err = '';
    child.stdout?.on('data', (b: Buffer) => {
      size += b.length;
      if (size > MAX_DUMP_BYTES) child.kill();
      else out.push(b);
    });
    child.stderr?.on('data', (b: Buffer) => (err = (err + b.toString()).slice(-2000)));
    child.on('error', (e) => reject(new FerryError('TOOL_MISSING', `${cmd}: ${e.message}`)));
    child.on('close', (code) => {
      if (size > MAX_DUMP_BYTES)
        reject(new FerryError('ETC_TOO_LARGE', `${cmd}: extended attributes over the size limit`));
      else if (code !== 0) reject(new FerryError('TOOL_FAILED', `${cmd} exited ${code}: ${err}`));
      else resolve(Buffer.concat(out).toString('latin1'));
    });
    child.stdin?.end(opts.input);
  });
}

/** getfattr quotes bytes as \ooo; its output is read as latin1 so each char is one byte. */
function unquote(s: string): string {
  const bytes = Buffer.from(
    s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))),
    'latin1',
  );
  return bytes.toString('utf8');
}

function quote(s: string): string {
  return [...Buffer.from(s, 'utf8')]
    .map((b) =>
      /[A-Za-z0-9._/+@,:-]/.test(String.fromCharCode(b))
        ? String.fromCharCode(b)
        : `\\${b.toString(8).padStart(3, '0')}`,
    )
    .join('');
}

/** Reads every extended attribute under `root` (a real directory path). */
export async function readXattrs(root: string): Promise<XattrMap> {
  const dump = await run(
    'getfattr',
    ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', '--', root],
    {},
  );
  const map: XattrMap = new Map();
  let current: [string, string][] | undefined;
  for (const line of dump.split('\n')) {
    if (line.startsWith('# file: ')) {
      const rel = relative(root, unquote(line.slice(8)));
      if (rel.startsWith('..')) throw new FerryError('INTERNAL', `getfattr named ${rel}`);
      current = [];
      map.set(rel, current);
    } else if (line !== '' && current) {
      const eq = line.indexOf('=');
      const name = unquote(eq < 0 ? line : line.slice(0, eq));
      const value = eq < 0 ? '' : line.slice(eq + 1);
      if (value !== '' && !/^0x[0-9a-f]*$/.test(value))
        throw new FerryError('INTERNAL', `getfattr printed a non-hex value for ${name}`);
      current.push([name, value === '0x' ? '' : value]);
    }
  }
  return map;
}

/** Sets the given attributes under `root`, which Ferry created itself (never an input tree). */
export async function writeXattrs(root: string, items: [rel: string, attrs: [string, string][]][]) {
  const dump = items
    .filter(([, attrs]) => attrs.length > 0)
    .map(([rel, attrs]) => {
      const lines = attrs.map(([n, v]) => `${quote(n)}=${v === '' ? '""' : v}`);
      return `# file: ${quote(rel === '' ? '.' : rel)}\n${lines.join('\n')}\n`;
    })
    .join('\n');
  if (dump !== '') await run('setfattr', ['-h', '--restore=-'], { cwd: root, input: dump });
}

/** The tree with each entry's attributes folded in, so that merging compares them too. */
export function withXattrs(tree: EtcTree, map: XattrMap): EtcTree {
  const entries = new Map(tree.entries);
  for (const [rel, attrs] of map) {
    const e = entries.get(rel);
    if (e && attrs.length > 0) {
      const sorted = [...attrs].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
      entries.set(rel, { ...e, xattrs: JSON.stringify(sorted) });
    }
  }
  return { root: tree.root, entries };
}

/** The attribute pairs of an entry (see withXattrs). */
export function xattrsOf(e: { xattrs?: string }): [string, string][] {
  return e.xattrs === undefined ? [] : (JSON.parse(e.xattrs) as [string, string][]);
}
