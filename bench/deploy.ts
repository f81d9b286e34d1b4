/**
 * Deployment benchmark: five successive Debian releases (v1, v3, v2, v4, big of `npm run
 * bench:data`) kept side by side, in one run, against OSTree on the same trees.
 *
 *   node bench/deploy.ts [--json FILE]
 *
 * 1. Storage: Ferry's deployment store (objects + hardlinked checkouts of all five) against five
 *    plain copies, and against an OSTree bare repository with the five commits checked out.
 * 2. Bytes downloaded per update: the compressed objects a device holding the previous release
 *    lacks plus the listing (whole for the first, then as a delta from the previous listing), as
 *    `ferry deploy update` fetches them from a repository written by `publishTreeObjects` and
 *    `storeTreeDeltas`, against OSTree's object pull (archive objects the device's repo lacks).
 * Both sides are also checked: every Ferry deployment verifies against its tree digest, and each
 * OSTree checkout is compared with its tree.
 */
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DeployStore, DirectoryObjectSource } from '@ferry/agent';
import { encodeTree, scanTree, treeDigest, type TreeListing } from '@ferry/core';
import { publishTreeObjects, storeTreeDeltas, treeDeltaFile } from '@ferry/repo';
import { bytesNotIn, filesUnder } from './delta-result.ts';
import { formatTable, haveTool, round, run, timeIt } from './lib.ts';
import { commitTree, ostreeCheckoutSame, initOstreeRepo } from './delta-ostree.ts';

const DATA = join(import.meta.dirname, '..', '.cache', 'bench-data');
/** In the order a device would meet them: minbase, an upgrade, 20 packages, an upgrade, many. */
export const RELEASES = ['rootfs-v1', 'rootfs-v3', 'rootfs-v2', 'rootfs-v4', 'rootfs-big'];

/** One release deployed after the previous one. */
export interface DeployStep {
  release: string;
  entries: number;
  /** Bytes of the tree's files (what one plain copy holds). */
  apparentBytes: number;
  newObjects: number;
  /** Compressed objects + compressed listing a device fetches from the repository. */
  ferryFetchBytes: number;
  ostreePullBytes: number;
  deploySeconds: number;
  verified: boolean;
  ostreeVerified: boolean;
}

/** Everything runDeployBench measured. */
export interface DeployBenchResult {
  steps: DeployStep[];
  /** du of five separate copies (each counted alone). */
  copiesBytes: number;
  /** du of the Ferry store with all five deployments. */
  ferryStoreBytes: number;
  /** du of an OSTree bare repository plus its five hardlinked checkouts. */
  ostreeBytes: number;
}

async function duBytes(...paths: string[]): Promise<number> {
  const { stdout } = await run('du', ['-s', '--block-size=1', '-c', ...paths]);
  return Number(/^(\d+)\s+total$/m.exec(stdout)?.[1] ?? NaN);
}

const apparent = (l: TreeListing) =>
  l.entries.reduce((n, e) => n + (e.type === 'file' ? e.size! : 0), 0);

/** Runs the benchmark in a fresh directory under $FERRY_BENCH_TMP or /var/tmp. */
export async function runDeployBench(log: (l: string) => void): Promise<DeployBenchResult> {
  if (!haveTool('ostree')) throw new Error('ostree is not installed (apt-get install ostree)');
  const work = await mkdtemp(
    join(process.env.FERRY_BENCH_TMP ?? '/var/tmp', 'ferry-bench-deploy-'),
  );
  try {
    const store = await DeployStore.open(join(work, 'store'));
    const repo = join(work, 'repo');
    const [archive, bare] = [join(work, 'ostree-archive'), join(work, 'ostree-bare')];
    await initOstreeRepo(archive, 'archive');
    await initOstreeRepo(bare, 'bare');
    await mkdir(join(work, 'ostree-checkouts'));
    const steps: DeployStep[] = [];
    let objectsBefore = new Map<string, number>();
    let previous: string | undefined;
    for (const [i, name] of RELEASES.entries()) {
      const tree = join(DATA, name);
      log(`${name}: scanning, publishing, deploying`);
      const listing = await scanTree(tree);
      const bytes = encodeTree(listing);
      const published = await publishTreeObjects(repo, listing, tree);
      const digest = treeDigest(bytes);
      // After the first release a device holding the previous listing fetches the delta.
      let listingBytes = published.listingBytes;
      if (previous) {
        await storeTreeDeltas(repo, { digest, bytes }, [previous]);
        listingBytes = (await stat(treeDeltaFile(repo, digest, previous))).size;
      }
      previous = digest;
      const missing = new Set(await store.missingObjects(listing));
      const ferryFetchBytes =
        listingBytes + [...missing].reduce((n, id) => n + published.objectBytes.get(id)!, 0);
      const deployed = await timeIt(async () => {
        await store.importObjects(listing, new DirectoryObjectSource(tree, listing));
        const d = await store.checkout(listing, {
          release: { version: `${i + 1}.0.0`, counter: i + 1 },
        });
        await store.setDefault(d.id);
        return d;
      });
      const verified =
        (await store.verifyDeployment(deployed.result.id)).tree === treeDigest(bytes);
      const rev = await commitTree(archive, name, tree, join(work, `${name}.tar`));
      const objectsAfter = await filesUnder(join(archive, 'objects'));
      const ostreePullBytes = bytesNotIn(objectsBefore, objectsAfter);
      objectsBefore = objectsAfter;
      await run('ostree', ['pull-local', `--repo=${bare}`, archive, name]);
      const ostreeVerified = await ostreeCheckoutSame(
        bare,
        rev,
        join(work, 'ostree-checkouts', name),
        join(work, `${name}.tar`),
      );
      await rm(join(work, `${name}.tar`), { force: true });
      steps.push({
        release: name,
        entries: listing.entries.length,
        apparentBytes: apparent(listing),
        newObjects: missing.size,
        ferryFetchBytes,
        ostreePullBytes,
        deploySeconds: deployed.seconds,
        verified,
        ostreeVerified,
      });
    }
    return {
      steps,
      copiesBytes: (await Promise.all(RELEASES.map((r) => duBytes(join(DATA, r))))).reduce(
        (a, b) => a + b,
        0,
      ),
      ferryStoreBytes: await duBytes(join(work, 'store')),
      ostreeBytes: await duBytes(bare, join(work, 'ostree-checkouts')),
    };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

const mb = (n: number) => round(n / 1e6, 1);

/** The two tables of the deployment benchmark. */
export function formatDeployBench(r: DeployBenchResult): string {
  const pct = (a: number, b: number) => `${round((100 * a) / b, 1)} %`;
  return [
    'Storage of five releases kept side by side (du, each inode once)',
    formatTable(
      ['layout', 'MB on disk', 'of five copies'],
      [
        ['five plain copies', mb(r.copiesBytes), '100 %'],
        ['Ferry deployment store', mb(r.ferryStoreBytes), pct(r.ferryStoreBytes, r.copiesBytes)],
        ['OSTree bare repo + checkouts', mb(r.ostreeBytes), pct(r.ostreeBytes, r.copiesBytes)],
      ],
    ),
    '',
    'Bytes downloaded per update (device holds the previous release)',
    formatTable(
      [
        'release',
        'entries',
        'tree MB',
        'new objects',
        'Ferry MB',
        'OSTree pull MB',
        'Ferry/OSTree',
        'deploy s',
        'verified',
      ],
      r.steps.map((s) => [
        s.release,
        s.entries,
        mb(s.apparentBytes),
        s.newObjects,
        mb(s.ferryFetchBytes),
        mb(s.ostreePullBytes),
        round(s.ferryFetchBytes / s.ostreePullBytes, 3),
        round(s.deploySeconds, 1),
        s.verified && s.ostreeVerified ? 'both' : `ferry ${s.verified}, ostree ${s.ostreeVerified}`,
      ]),
    ),
  ].join('\n');
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { json: { type: 'string' } } });
  for (const r of RELEASES)
    if (!(await stat(join(DATA, r)).catch(() => undefined)))
      throw new Error(`${join(DATA, r)} is missing: run 'npm run bench:data' first`);
  const r = await runDeployBench((l) => console.error(l));
  console.log(formatDeployBench(r));
  if (values.json) await writeFile(values.json, JSON.stringify(r, null, 2));
}
