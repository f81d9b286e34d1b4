/**
 * Delta benchmark: bytes a device downloads to go from v1 to v2 (20 packages added) and from v1 to
 * v3 (one package upgraded), with Ferry and with its peers on the same Debian data, in one run;
 * plus time to publish and time to apply. Needs `npm run bench:data`, root and the Debian packages
 * casync, zchunk, ostree, xdelta3, zstd, nginx, rsync.
 *
 *   node bench/delta.ts [--quick] [--fresh] [--json FILE]
 *
 * Each measurement is cached under .cache/bench/delta/results keyed by its inputs (tree stamps,
 * image options), so a second run re-measures nothing; --fresh measures everything again.
 * --quick measures the v1 -> v3 pair only and codes Ferry's stage-2 deltas at zstd -9, not -19.
 */
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { allImages, treePath, treeStamp, type BenchImage } from './delta-data.ts';
import { ferryChunkDeltas, ferryChunks, ferryDeltaPack } from './delta-ferry.ts';
import { ferryProductRows } from './delta-product.ts';
import { floorRows } from './delta-floor.ts';
import { ostreePeers } from './delta-ostree.ts';
import { casyncPeer, xdeltaPeer, zchunkPeer } from './delta-peers.ts';
import { memo, memoRows, type DeltaRow, type PeerContext } from './delta-result.ts';
import { formatTable, round } from './lib.ts';

/** Options of {@link runDeltaBench}. */
export interface DeltaBenchOptions {
  quick?: boolean;
  fresh?: boolean;
  log?: (line: string) => void;
}

/** What {@link runDeltaBench} measured: one row per peer and pair. */
export interface DeltaBenchResult {
  pairs: string[];
  rows: DeltaRow[];
}

async function pairRows(
  ctx: PeerContext,
  pair: string,
  img: Record<string, Record<string, BenchImage>>,
  level: number,
): Promise<DeltaRow[]> {
  const [b, t] = pair.split('->') as [string, string];
  const gz = (v: string) => img['sqfs-gzip']![v]!;
  const raw = (v: string) => img['erofs-none']![v]!;
  const key = {
    pair,
    b: await treeStamp(b),
    t: await treeStamp(t),
    img: [gz(t).size, raw(t).size],
  };
  const m = (name: string, fn: () => Promise<DeltaRow>) => memo(ctx, `${name}@${pair}`, key, fn);
  const rows: DeltaRow[] = [];
  rows.push({
    peer: 'full download (squashfs gzip image)',
    pair,
    bytes: gz(t).size,
    publishSeconds: gz(t).buildSeconds,
    note: 'Ferry builder default',
  });
  rows.push(
    await m('ferry-sqfs', () => ferryChunks('squashfs gzip', pair, gz(b).path, gz(t).path)),
  );
  rows.push(
    await m('ferry-erofs', () => ferryChunks('erofs none', pair, raw(b).path, raw(t).path)),
  );
  rows.push(await m('casync-image', () => casyncPeer('image', pair, gz(b).path, gz(t).path)));
  rows.push(await m('casync-tree', () => casyncPeer('tree', pair, treePath(b), treePath(t))));
  rows.push(await m('zchunk', () => zchunkPeer(pair, gz(b).path, gz(t).path)));
  const mr = (name: string, fn: () => Promise<DeltaRow[]>) =>
    memoRows(ctx, `${name}@${pair}`, key, fn);
  rows.push(...(await mr('ostree', () => ostreePeers(pair, treePath(b), treePath(t)))));
  rows.push(
    await m('xdelta3-sqfs', () => xdeltaPeer('squashfs gzip', pair, gz(b).path, gz(t).path)),
  );
  rows.push(
    await m('xdelta3-erofs', () => xdeltaPeer('erofs none', pair, raw(b).path, raw(t).path)),
  );
  rows.push(...(await mr('floor', () => floorRows(pair, treePath(b), treePath(t)))));
  // Stage 2, on the uncompressed squashfs image (`ferry image build --compression none`).
  const sq = (v: string) => img['sqfs-none']![v]!;
  const s2 = { ...key, level, sq: sq(t).size };
  const m2 = (name: string, fn: () => Promise<DeltaRow>) => memo(ctx, `${name}@${pair}`, s2, fn);
  const lbl = 'squashfs none';
  rows.push(await m2('ferry-sqfsnone-3', () => ferryChunks(lbl, pair, sq(b).path, sq(t).path)));
  rows.push(
    await m2('ferry-sqfsnone-19', () => ferryChunks(lbl, pair, sq(b).path, sq(t).path, level)),
  );
  rows.push(
    await m2('ferry-chunk-delta', () => ferryChunkDeltas(lbl, pair, sq(b).path, sq(t).path, level)),
  );
  rows.push(await m2('ferry-pack', () => ferryDeltaPack(lbl, pair, sq(b).path, sq(t).path, level)));
  return rows;
}

/**
 * Any base: a device on v3 (not the release the update was made from) going to v2. Ferry's chunks
 * and a pack computed on demand for that base; the exact-base peers would need a new delta too.
 */
async function anyBaseRows(
  ctx: PeerContext,
  img: Record<string, Record<string, BenchImage>>,
  level: number,
): Promise<DeltaRow[]> {
  const pair = 'v3->v2';
  const sq = (v: string) => img['sqfs-none']![v]!;
  const gz = (v: string) => img['sqfs-gzip']![v]!;
  const key = {
    pair,
    b: await treeStamp('v3'),
    t: await treeStamp('v2'),
    sq: sq('v2').size,
    level,
  };
  const m = (name: string, fn: () => Promise<DeltaRow>) => memo(ctx, `${name}@${pair}`, key, fn);
  return [
    await m('ferry-sqfs', () => ferryChunks('squashfs gzip', pair, gz('v3').path, gz('v2').path)),
    await m('ferry-pack', () =>
      ferryDeltaPack('squashfs none', pair, sq('v3').path, sq('v2').path, level),
    ),
  ];
}

/**
 * The product path: `repo delta` packs installed by `Agent.update()` from nginx (delta-product.ts),
 * one repository and device per pair.
 */
async function productRows(
  ctx: PeerContext,
  pairs: string[],
  img: Record<string, Record<string, BenchImage>>,
  level: number,
): Promise<DeltaRow[]> {
  const sq = (v: string) => img['sqfs-none']![v]!;
  const key = {
    pairs,
    level,
    stamps: await Promise.all(['v1', 'v2', 'v3'].map((v) => treeStamp(v))),
    sizes: ['v1', 'v2', 'v3'].map((v) => sq(v).size),
    recipe: 2,
  };
  return memoRows(ctx, `ferry-product@${pairs.join(',')}`, key, () =>
    ferryProductRows(pairs, sq, level),
  );
}

/** Runs every peer on every pair (cached per input), sequentially: the machine is shared. */
export async function runDeltaBench(opts: DeltaBenchOptions = {}): Promise<DeltaBenchResult> {
  const log = opts.log ?? (() => {});
  const ctx: PeerContext = { fresh: opts.fresh === true, log };
  const img = await allImages(log);
  const pairs = opts.quick ? ['v1->v3'] : ['v1->v2', 'v1->v3'];
  const rows: DeltaRow[] = [];
  const level = opts.quick ? 9 : 19;
  for (const pair of pairs) rows.push(...(await pairRows(ctx, pair, img, level)));
  rows.push(...(await productRows(ctx, pairs, img, level)));
  if (!opts.quick) {
    rows.push(...(await anyBaseRows(ctx, img, level)));
    pairs.push('v3->v2');
  }
  return { pairs, rows };
}

const fmtS = (s: number | undefined) => (s === undefined ? '-' : round(s, 1));

/** The table: bytes, ratio to Ferry today (squashfs gzip chunks), publish and apply seconds. */
export function formatDeltaBench(r: DeltaBenchResult): string {
  const out: string[] = [];
  for (const pair of r.pairs) {
    const rows = r.rows.filter((x) => x.pair === pair);
    const ferry = rows.find((x) => x.peer.startsWith('Ferry squashfs gzip'))?.bytes;
    out.push(`-- ${pair} --`);
    out.push(
      formatTable(
        ['peer', 'bytes', 'MiB', 'x Ferry', 'publish s', 'apply s', 'ok', 'note'],
        rows.map((x) =>
          x.bytes === undefined
            ? [x.peer, '-', '-', '-', '-', '-', '-', `cannot run: ${x.error ?? '?'}`]
            : [
                x.peer,
                x.bytes,
                round(x.bytes / 2 ** 20, 2),
                ferry ? round(x.bytes / ferry, 3) : '-',
                fmtS(x.publishSeconds),
                fmtS(x.applySeconds),
                x.verified === undefined ? '-' : x.verified ? 'yes' : 'NO',
                x.note ?? '',
              ],
        ),
      ),
    );
  }
  return out.join('\n');
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: { quick: { type: 'boolean' }, fresh: { type: 'boolean' }, json: { type: 'string' } },
  });
  const result = await runDeltaBench({
    quick: values.quick === true,
    fresh: values.fresh === true,
    log: (l) => console.error(l),
  });
  console.log(formatDeltaBench(result));
  if (values.json) await writeFile(values.json, JSON.stringify(result, null, 2));
}
