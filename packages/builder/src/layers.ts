/**
 * Applies image layers (tar streams) onto a staging tree in order, with OCI whiteouts:
 * `.wh.NAME` removes NAME left by lower layers, `.wh..wh..opq` empties a directory of lower-layer
 * contents. Whiteout files never reach the image. A plain rootfs tar is applied as one layer.
 */
import { FerryError } from '@ferry/core';
import { normalizeEntryPath, type StagingTree } from './tar-extract.ts';
import type { TarItem } from './tar-reader.ts';

const WH = '.wh.';
const OPAQUE = '.wh..wh..opq';

/** What one archive member means for the tree. */
export type LayerAction =
  | { kind: 'entry'; parts: string[] }
  | { kind: 'whiteout'; dir: string[]; name: string }
  | { kind: 'opaque'; dir: string[] }
  | { kind: 'ignore' };

/**
 * Classifies a member name (pure). Throws IMAGE_PATH_TRAVERSAL for unsafe names, including a
 * whiteout naming `.` or `..` (it would delete the directory or its parent).
 */
export function classifyEntry(name: string, tree?: StagingTree): LayerAction {
  const parts = normalizeEntryPath(name, tree?.limits);
  const base = parts.at(-1);
  const dir = parts.slice(0, -1);
  // Members under `.wh.`-named directories (aufs `.wh..wh.plnk/...`) are bookkeeping, not content.
  if (dir.some((p) => p.startsWith(WH))) return { kind: 'ignore' };
  if (base === undefined || !base.startsWith(WH)) return { kind: 'entry', parts };
  if (base === OPAQUE) return { kind: 'opaque', dir };
  const target = base.slice(WH.length);
  // Other `.wh..wh.` names are aufs bookkeeping (hardlink dirs), not whiteouts.
  if (target.startsWith(WH)) return { kind: 'ignore' };
  if (target === '' || target === '.' || target === '..')
    throw new FerryError(
      'IMAGE_PATH_TRAVERSAL',
      `entry ${JSON.stringify(name)} is a whiteout naming ${JSON.stringify(target)}`,
    );
  return { kind: 'whiteout', dir, name: target };
}

/** Progress callback: entries written so far in this layer. */
export type EntryProgress = (entriesInLayer: number, path: string) => void;

/**
 * Applies one layer's entries to `tree`.
 *
 * @example
 * tree.beginLayer();
 * await applyLayer(tree, readTar(gunzipped), (n) => report(n));
 */
export async function applyLayer(
  tree: StagingTree,
  items: AsyncIterable<TarItem>,
  onEntry?: EntryProgress,
): Promise<number> {
  tree.beginLayer();
  let n = 0;
  for await (const { entry, body } of items) {
    const action = classifyEntry(entry.path, tree);
    if (action.kind === 'entry') await tree.write(entry, action.parts, body);
    else if (action.kind === 'opaque') {
      const dir = tree.resolveDir(action.dir, entry.path, true);
      if (dir !== null) tree.pruneChildren(dir);
    } else if (action.kind === 'whiteout') {
      const dir = tree.resolveDir(action.dir, entry.path, false);
      if (dir !== null) tree.pruneLower(dir === '' ? action.name : `${dir}/${action.name}`);
    }
    n++;
    if (onEntry && n % 1000 === 0) onEntry(n, entry.path);
  }
  return n;
}
