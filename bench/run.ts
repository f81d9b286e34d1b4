/**
 * `npm run bench`: every benchmark, peers side by side on the same data in the same run.
 *
 *   node bench/run.ts [--quick] [--json FILE]
 *
 * 1. chunk + hash (+ zstd store) throughput on a 1 GiB image against `casync make`;
 * 2. bundle creation against plain `mksquashfs` of a Debian tree (needs `npm run bench:data`);
 * 3. a full install against `dd` to the same slot, update bytes with local seeds, peak RSS;
 * 4. update bytes v1 -> v2 / v3 of Debian images: Ferry against casync, zchunk, OSTree, xdelta3;
 * 5. five Debian releases as deployments: storage and bytes per update against OSTree;
 * 6. fleet server check-ins per second and p50/p99 against the 5,000/s goal (SQLite, PostgreSQL).
 * --quick uses 256 MiB images, one run each, and skips the fsync run.
 */
import { stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { formatChunkingBench, runChunkingBench } from './chunking.ts';
import { formatBundleBench, runBundleBench } from './bundle.ts';
import { formatInstallBench, runInstallBench } from './install.ts';
import { formatDeltaBench, runDeltaBench } from './delta.ts';
import { formatDeployBench, RELEASES, runDeployBench } from './deploy.ts';
import { formatServerBench, runServerBench } from './server.ts';

const { values } = parseArgs({ options: { quick: { type: 'boolean' }, json: { type: 'string' } } });
const results: Record<string, unknown> = {};

console.log('== chunking: Ferry vs casync ==');
const chunking = await runChunkingBench({
  sizeMiB: values.quick ? 256 : 1024,
  casync: true,
  fsyncRun: !values.quick,
  log: (line) => console.error(line),
});
results.chunking = chunking;
console.log(formatChunkingBench(chunking));

console.log('\n== bundle creation: Ferry vs mksquashfs ==');
const tree = join(import.meta.dirname, '..', '.cache', 'bench-data', 'rootfs-v2');
if (await stat(tree).catch(() => undefined)) {
  const bundle = await runBundleBench(tree);
  results.bundle = bundle;
  console.log(formatBundleBench(bundle));
} else {
  console.log(
    `skipped: ${tree} is missing; run 'npm run bench:data' first (debootstrap, about 2 minutes)`,
  );
}

console.log('\n== install: Ferry vs dd, update bytes with local seeds, peak RSS ==');
const install = await runInstallBench({
  quick: values.quick === true,
  log: (line) => console.error(line),
});
results.install = install;
console.log(formatInstallBench(install));
console.log(
  '\n== delta: update bytes v1 -> v2 / v3, Ferry vs casync, zchunk, OSTree, xdelta3, floor ==',
);
if (
  await stat(join(import.meta.dirname, '..', '.cache', 'bench-data', 'rootfs-v3')).catch(
    () => undefined,
  )
) {
  const delta = await runDeltaBench({
    quick: values.quick === true,
    log: (line) => console.error(line),
  });
  results.delta = delta;
  console.log(formatDeltaBench(delta));
} else {
  console.log("skipped: the Debian trees are missing; run 'npm run bench:data' first");
}

console.log('\n== deployments: five Debian releases, storage and update bytes, Ferry vs OSTree ==');
const data = join(import.meta.dirname, '..', '.cache', 'bench-data');
if (
  (await Promise.all(RELEASES.map((r) => stat(join(data, r)).catch(() => undefined)))).every(
    Boolean,
  )
) {
  const deploy = await runDeployBench((line) => console.error(line));
  results.deploy = deploy;
  console.log(formatDeployBench(deploy));
} else {
  console.log("skipped: the Debian trees are missing; run 'npm run bench:data' first");
}

console.log('\n== fleet server: check-ins/s, p50/p99 vs the 5,000/s goal ==');
const server = await runServerBench({ checkins: values.quick ? 5000 : 20000 });
results.server = server;
console.log(formatServerBench(server));

if (values.json) await writeFile(values.json, JSON.stringify(results, null, 2));
