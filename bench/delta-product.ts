/**
 * The delta rows measured on the code devices run, not on the benchmark's re-implementation: a
 * repository holding v1, v2 and v3 as uncompressed squashfs from the builder (published as
 * bundles), delta packs from `makeDeltaPacks` (what `ferry repo delta` runs), Debian's nginx
 * serving it, and a file-backed device on v1 running `Agent.update()`: TUF refresh, pack in
 * ranged GETs, plain chunks for anything the pack did not give, read-back verification.
 * Bytes are what nginx sent for the update (its access log): pack, chunk index (as a delta
 * against the base index when the repository has one, else whole through TUF) and any plain
 * chunks. Needs root, sfdisk and nginx.
 */
import { createHash } from 'node:crypto';
import { mkdir, open } from 'node:fs/promises';
import { join } from 'node:path';
import { Agent, type AgentEvent, type FileBootloader } from '@ferry/agent';
import { generateKeyPair, loadKeyring, parsePrivateKey } from '@ferry/core';
import { initRepo, publishBundle } from '@ferry/repo';
import { makeDevice, startNginx, type DeviceFixture } from '@ferry/testing';
import { makeDeltaPacks } from '@ferry/repo';
import type { BenchImage } from './delta-data.ts';
import { cutImage } from './delta-ferry.ts';
import type { DeltaRow } from './delta-result.ts';
import { timeIt } from './lib.ts';

const MiB = 1 << 20;
const newKey = () => parsePrivateKey(generateKeyPair().privateKeyPem);

/** SHA-256 of the first `size` bytes of a partition of the device's disk. */
async function slotSha(d: DeviceFixture, part: string, size: number): Promise<string> {
  const fh = await open(d.disk, 'r');
  const h = createHash('sha256');
  try {
    const buf = Buffer.alloc(4 * MiB);
    for (let pos = 0; pos < size;) {
      const n = Math.min(buf.length, size - pos);
      await fh.read(buf, 0, n, d.partitions[part]!.offset + pos);
      h.update(buf.subarray(0, n));
      pos += n;
    }
  } finally {
    await fh.close();
  }
  return h.digest('hex');
}

/** A device on 1.0.0 (slot B, committed) following `channel` of the repository at `url`. */
async function deviceOnV1(
  work: DeviceFixture,
  repo: string,
  url: string,
  v1: string,
  slotMiB: number,
  channel: string,
): Promise<DeviceFixture> {
  const d = await makeDevice({
    slotMiB,
    extraToml: `[update]\nrepository = "${url}"\nchannel = "${channel}"\n`,
  });
  await d.trust(work, repo);
  await (await Agent.open({ root: d.root })).install(v1);
  await ((await Agent.open({ root: d.root })).bootloader as FileBootloader).boot();
  await d.boot('B');
  await (await Agent.open({ root: d.root })).mark('booted', 'good');
  return d;
}

/**
 * Rows "Ferry update with repo delta pack (agent install path)" for each of `pairs` (v1->v2,
 * v1->v3), images `sq(v)`; packs at zstd `level`.
 */
export async function ferryProductRows(
  pairs: string[],
  sq: (v: string) => BenchImage,
  level: number,
): Promise<DeltaRow[]> {
  const targets = pairs.map((p) => p.split('->')[1]!);
  const work = await makeDevice({ slotMiB: 8 });
  const rows: DeltaRow[] = [];
  try {
    const repo = join(work.root, 'srv', 'repo');
    await mkdir(repo, { recursive: true });
    const keys = { root: [newKey()], targets: [newKey()], snapshot: newKey(), timestamp: newKey() };
    const signing = { targets: keys.targets, snapshot: keys.snapshot, timestamp: keys.timestamp };
    await initRepo(repo, { keys });
    const keyring = await loadKeyring(join(work.root, 'etc/ferry/keyring'));
    const publish = async (v: string, counter: number) => {
      const b = await work.bundle(sq(v).path, { version: `${counter}.0.0`, counter });
      await publishBundle(repo, b, { channel: `to-${v}`, keyring, keys: signing });
      return b;
    };
    const v1 = await publish('v1', 1);
    const nginx = await startNginx(join(work.root, 'srv'));
    try {
      for (const [i, pair] of pairs.entries()) {
        const t = targets[i]!;
        // The base must be in the target's channel for `--last`; `--from` finds it anywhere.
        const pub = await timeIt(async () => {
          await publish(t, i + 2);
          return makeDeltaPacks(repo, { channel: `to-${t}`, from: ['1.0.0'], level });
        });
        const pack = pub.result[0];
        const slotMiB = Math.ceil((Math.max(sq('v1').size, sq(t).size) * 1.02) / MiB) + 8;
        const d = await deviceOnV1(work, repo, `${nginx.url}/repo`, v1, slotMiB, `to-${t}`);
        try {
          const events: AgentEvent[] = [];
          const agent = await Agent.open({ root: d.root });
          const logFrom = (await nginx.accessLog()).length;
          const apply = await timeIt(() =>
            agent.update({ onEvent: (e) => void (e.id === 'install.delta' && events.push(e)) }),
          );
          const r = apply.result.installed!;
          const delta = events.find((e) => e.id === 'install.delta');
          const deltaInfo =
            delta?.id === 'install.delta' ? `${delta.chunks} chunks, ${delta.result}` : 'none';
          const target = await cutImage(sq(t).path);
          // What nginx sent for this update: pack, index (delta or whole) and chunks.
          const log = (await nginx.accessLog()).slice(logFrom);
          const sent = (f: (l: string) => boolean) =>
            log.filter(f).reduce((a, l) => a + Number(l.split(' ')[3]), 0);
          const indexBytes = sent(
            (l) =>
              l.includes('.cidx') && (l.includes('/repo/deltas/') || l.includes('/repo/targets/')),
          );
          // The fetcher reads the pack, the index delta and plain chunks; the rest is chunks.
          const indexDelta = sent((l) => l.includes('/repo/deltas/') && l.includes('.cidx.zst'));
          const fetched = r.bundleBytesRead - (r.deltaBytes ?? 0) - indexDelta;
          rows.push({
            peer: 'Ferry update with repo delta pack (agent install path)',
            pair,
            bytes: sent(
              (l) =>
                l.includes('/repo/chunks/') ||
                l.includes('/repo/deltas/') ||
                (l.includes('/repo/targets/') && l.includes('.cidx')),
            ),
            publishSeconds: pub.seconds,
            applySeconds: apply.seconds,
            verified: (await slotSha(d, 'rootA', sq(t).size)) === target.index.imageSha256,
            note:
              `pack ${r.deltaBytes ?? 0} B (${deltaInfo}) + plain chunks ${fetched} B ` +
              `+ index ${indexBytes} B (as a delta against the base index when the repository has one); pack made by repo delta (${pack?.bytes ?? 0} B); ` +
              `publish = bundle + repo publish + repo delta; apply = ferry update incl. verify`,
          });
        } finally {
          await d.cleanup();
        }
      }
    } finally {
      await nginx.stop();
    }
  } finally {
    await work.cleanup();
  }
  return rows;
}
