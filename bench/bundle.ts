/**
 * Bundle creation against plain `mksquashfs` of the same tree, in one run.
 *
 *   node bench/bundle.ts [--tree DIR]     (default: .cache/bench-data/rootfs-v2, from npm run bench:data)
 *
 * Rows: mksquashfs alone (the floor for making an image), `ferry image build` (the same tool plus
 * Ferry's reproducibility flags), `ferry bundle create` on that image (chunk, hash, compress,
 * verity, sign), and build + bundle together; with time, MB/s over the image size, and the ratio
 * to plain mksquashfs.
 */
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { buildImage } from '@ferry/builder';
import { createBundle, parsePrivateKey, generateKeyPair } from '@ferry/core';
import { formatTable, haveTool, mbPerSec, round, run, timeIt } from './lib.ts';

export interface BundleBenchResult {
  tree: string;
  imageBytes: number;
  bundleBytes: number;
  mksquashfsSeconds: number;
  imageBuildSeconds: number;
  bundleCreateSeconds: number;
}

/** Runs the comparison on `tree`; throws if mksquashfs is missing. */
export async function runBundleBench(tree: string): Promise<BundleBenchResult> {
  if (!haveTool('mksquashfs'))
    throw new Error('mksquashfs is not installed (bash scripts/setup.sh)');
  const work = await mkdtemp(
    join(process.env.FERRY_BENCH_TMP ?? '/var/tmp', 'ferry-bench-bundle-'),
  );
  try {
    const plain = join(work, 'plain.sqfs');
    const m = await timeIt(() =>
      run('mksquashfs', [tree, plain, '-noappend', '-comp', 'gzip', '-no-progress', '-quiet']),
    );
    const image = join(work, 'ferry.sqfs');
    const b = await timeIt(() =>
      buildImage({ from: tree, format: 'squashfs', out: image, sourceDateEpoch: 1700000000 }),
    );
    const key = parsePrivateKey(generateKeyPair().privateKeyPem);
    const out = join(work, 'release.fbd');
    const c = await timeIt(() =>
      createBundle({
        images: [{ name: 'rootfs', path: image }],
        compatible: 'bench',
        version: '1.0.0',
        releaseCounter: 1,
        keys: [key],
        out,
      }),
    );
    return {
      tree,
      imageBytes: (await stat(image)).size,
      bundleBytes: (await stat(out)).size,
      mksquashfsSeconds: m.seconds,
      imageBuildSeconds: b.seconds,
      bundleCreateSeconds: c.seconds,
    };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

export function formatBundleBench(r: BundleBenchResult): string {
  const row = (name: string, s: number) => [
    name,
    round(s, 2),
    round(mbPerSec(r.imageBytes, s), 1),
    round(s / r.mksquashfsSeconds, 2),
  ];
  return [
    `Bundle creation vs plain mksquashfs (tree ${r.tree}; image ${round(r.imageBytes / 1e6, 1)} MB, bundle ${round(r.bundleBytes / 1e6, 1)} MB)`,
    formatTable(
      ['step', 'seconds', 'MB/s (image)', 'x mksquashfs'],
      [
        row('mksquashfs (plain, gzip)', r.mksquashfsSeconds),
        row('ferry image build (squashfs, gzip)', r.imageBuildSeconds),
        row('ferry bundle create', r.bundleCreateSeconds),
        row('ferry image build + bundle create', r.imageBuildSeconds + r.bundleCreateSeconds),
      ],
    ),
  ].join('\n');
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { tree: { type: 'string' } } });
  const tree = values.tree ?? join(import.meta.dirname, '..', '.cache', 'bench-data', 'rootfs-v2');
  if (!(await stat(tree).catch(() => undefined))) {
    console.error(`bench: ${tree} is missing; run 'npm run bench:data' first`);
    process.exit(1);
  }
  console.log(formatBundleBench(await runBundleBench(tree)));
}
