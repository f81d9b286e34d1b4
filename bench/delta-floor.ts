/**
 * The floor of the delta benchmark: the contents of the target tree's regular files that appear
 * nowhere in the base tree (new or changed files, deduplicated by content), compressed with zstd
 * -19 one file at a time and as one tar. Metadata (directories, links, modes) is not counted, so
 * a real update needs somewhat more; a pairwise binary diff of changed files can go below it.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { constants, zstdCompressSync } from 'node:zlib';
import { CACHE } from './delta-data.ts';
import type { DeltaRow } from './delta-result.ts';
import { run } from './lib.ts';

/** Content hash -> one relative path, for every regular file (never following symlinks). */
async function contents(tree: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  // readdir does not descend into symlinked directories, and only regular files are read.
  for (const e of await readdir(tree, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    const p = join(e.parentPath, e.name);
    const h = createHash('sha256')
      .update(await readFile(p))
      .digest('hex');
    if (!out.has(h)) out.set(h, relative(tree, p));
  }
  return out;
}

/** Both floor rows for one pair (per-file zstd -19, one tar with zstd -19 --long). */
export async function floorRows(pair: string, base: string, target: string): Promise<DeltaRow[]> {
  const have = await contents(base);
  const want = await contents(target);
  const fresh = [...want].filter(([h]) => !have.has(h)).map(([, p]) => p);
  let perFile = 0;
  let raw = 0;
  for (const p of fresh) {
    const data = await readFile(join(target, p));
    raw += data.length;
    perFile += zstdCompressSync(data, {
      params: { [constants.ZSTD_c_compressionLevel]: 19 },
    }).length;
  }
  const list = join(CACHE, `floor-${pair}.list`);
  await writeFile(list, fresh.join('\n') + '\n');
  const { stdout } = await run('sh', [
    '-c',
    'tar -C "$1" --no-recursion -cf - -T "$2" | zstd -q -19 --long=27 -T1 -c | wc -c',
    'sh',
    target,
    list,
  ]);
  await rm(list, { force: true });
  const note = `${fresh.length} new/changed files, ${raw} bytes raw`;
  return [
    { peer: 'floor: files, zstd -19 each', pair, bytes: perFile, note },
    { peer: 'floor: one tar, zstd -19 --long', pair, bytes: Number(stdout.trim()), note },
  ];
}
