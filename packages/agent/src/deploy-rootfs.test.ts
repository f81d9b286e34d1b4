/**
 * Deployments of real Debian root filesystems (the benchmark trees of `npm run bench:data`),
 * when they are present. Reports figures as test diagnostics; asserts only correctness.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { encodeTree, scanTree } from '@ferry/core';
import { needs, tempDir } from '@ferry/testing';
import { DeployStore } from './deploy-store.ts';
import { DirectoryObjectSource } from './deploy-objects.ts';

const data = join(import.meta.dirname, '../../../.cache/bench-data');
const v1 = join(data, 'rootfs-v1');
const v2 = join(data, 'rootfs-v2');
const opts =
  existsSync(v1) && existsSync(v2)
    ? needs('root', 'setfattr', 'mknod')
    : { skip: 'no bench data (npm run bench:data)' };
let cleanup: (() => Promise<void>) | undefined;
after(() => cleanup?.());

describe('deployments of real root filesystems', () => {
  it('imports v1 and v2 once each, shares what they share, and verifies both', opts, async (t) => {
    const tmp = await tempDir('ferry-deploy-rootfs-');
    cleanup = tmp.cleanup;
    let t0 = performance.now();
    const l1 = await scanTree(v1);
    t.diagnostic(
      `scanTree rootfs-v1: ${l1.entries.length} entries in ${Math.round(performance.now() - t0)} ms`,
    );
    t.diagnostic(`listing: ${encodeTree(l1).length} bytes`);
    const l2 = await scanTree(v2);
    const store = await DeployStore.open(join(tmp.dir, 'deploy'));
    t0 = performance.now();
    const r1 = await store.importObjects(l1, new DirectoryObjectSource(v1, l1));
    const d1 = await store.checkout(l1, { release: { version: '1', counter: 1 } });
    t.diagnostic(
      `v1: ${r1.objects} objects, ${r1.bytes} bytes, import+checkout ${Math.round(performance.now() - t0)} ms`,
    );
    const missing = await store.missingObjects(l2);
    const r2 = await store.importObjects(l2, new DirectoryObjectSource(v2, l2));
    assert.equal(r2.objects, missing.length);
    const d2 = await store.checkout(l2, { release: { version: '2', counter: 2 } });
    t.diagnostic(`v2 adds ${r2.objects} objects (${r2.bytes} bytes)`);
    await store.verifyDeployment(d1.id);
    await store.verifyDeployment(d2.id);
    const u = await store.du();
    t.diagnostic(
      `store ${u.storeBytes} bytes on disk vs ${u.apparentBytes} apparent for both deployments`,
    );
    assert.ok(u.storeBytes < u.apparentBytes);
  });
});
