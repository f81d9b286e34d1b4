/**
 * `ferry demo`: the main job on embedded defaults. Builds two releases of a small rootfs,
 * signs them into bundles, verifies them, and shows how much of v2 a device holding v1
 * already has.
 */
import { mkdir, readFile, rm, writeFile, access } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createHash } from 'node:crypto';
import { buildImage } from '@ferry/builder';
import {
  createBundle,
  FileSource,
  loadKeyring,
  loadPrivateKey,
  openBundle,
  verifyBundle,
  writeKeyPair,
} from '@ferry/core';
import { str, type CommandSpec } from './command.ts';
import { provisionDemoDevice, runDeviceDemo } from './demo-device.ts';

/** Deterministic filler text so the demo tree has realistic, compressible files. */
function text(seed: string, lines: number): string {
  const out: string[] = [];
  let h = createHash('sha256').update(seed).digest('hex');
  for (let i = 0; i < lines; i++) {
    h = createHash('sha256').update(h).digest('hex');
    out.push(`${i.toString().padStart(6, '0')} ${h} ${seed}`);
  }
  return `${out.join('\n')}\n`;
}

async function makeRootfs(dir: string, version: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  for (const d of ['etc', 'usr/bin', 'usr/lib/demo', 'usr/share/doc/demo', 'var', 'data'])
    await mkdir(join(dir, d), { recursive: true });
  await writeFile(join(dir, 'etc/os-release'), `NAME="Ferry Demo OS"\nVERSION_ID=${version}\n`);
  await writeFile(join(dir, 'usr/bin/hello'), `#!/bin/sh\necho "hello from ${version}"\n`, {
    mode: 0o755,
  });
  for (let i = 0; i < 24; i++)
    await writeFile(join(dir, `usr/lib/demo/lib${i}.so`), text(`lib${i}`, 2000));
  await writeFile(join(dir, 'usr/share/doc/demo/README'), text('readme', 500));
  if (version !== '1.0.0') {
    await writeFile(join(dir, 'usr/lib/demo/lib7.so'), text(`lib7-${version}`, 2000));
    await writeFile(join(dir, 'usr/lib/demo/new-feature.so'), text(`feature-${version}`, 1500));
  }
}

export const demo: CommandSpec = {
  name: 'demo',
  summary: 'Build, sign and verify two releases end to end (the quick tour)',
  description:
    'Works in --dir (default .cache/demo): makes a signing key, two rootfs trees, squashfs images, signed bundles, verifies them, and reports how many bytes of v2 a device holding v1 would still need.',
  options: {
    dir: {
      type: 'string',
      placeholder: 'DIR',
      description: 'working directory',
      default: '.cache/demo',
    },
  },
  json: true,
  async run(ctx) {
    const dir = resolve(str(ctx, 'dir') ?? '.cache/demo');
    const say = (s: string) => ctx.out.line(s);
    await mkdir(join(dir, 'keys'), { recursive: true });
    const keyPrefix = join(dir, 'keys', 'release');
    if (
      !(await access(`${keyPrefix}.key`).then(
        () => true,
        () => false,
      ))
    )
      await writeKeyPair(keyPrefix);
    const key = await loadPrivateKey(`${keyPrefix}.key`);
    say(`1. signing key ${key.keyId.slice(0, 16)}... in ${join(dir, 'keys')}`);
    const releases = [
      { version: '1.0.0', counter: 1 },
      { version: '1.1.0', counter: 2 },
    ];
    const bundles: string[] = [];
    for (const r of releases) {
      const tree = join(dir, `rootfs-${r.version}`);
      await makeRootfs(tree, r.version);
      const img = await buildImage({
        from: tree,
        format: 'squashfs',
        out: join(dir, `rootfs-${r.version}.sqfs`),
        sourceDateEpoch: 1700000000,
      });
      say(
        `2. release ${r.version}: image ${img.path}, ${img.size} bytes, sha256 ${img.sha256.slice(0, 16)}...`,
      );
      const b = await createBundle({
        images: [{ name: 'rootfs', path: img.path }],
        compatible: 'ferry-demo',
        version: r.version,
        releaseCounter: r.counter,
        keys: [key],
        out: join(dir, `demo-${r.version}.fbd`),
        created: '2026-01-01T00:00:00Z',
      });
      say(`3. release ${r.version}: signed bundle ${b.path}, ${b.size} bytes, ${b.chunks} chunks`);
      bundles.push(b.path);
    }
    const keyring = await loadKeyring(`${keyPrefix}.pub`);
    const source = new FileSource(bundles[1]!);
    const v = await verifyBundle(source, keyring).finally(() => source.close());
    say(`4. verified ${bundles[1]}: signature, every chunk, sha256 and dm-verity root`);
    const [b1, b2] = await Promise.all(
      bundles.map(async (p) => {
        const s = new FileSource(p);
        return openBundle(s).finally(() => s.close());
      }),
    );
    const device = join(dir, 'device');
    await provisionDemoDevice(device, `${keyPrefix}.pub`);
    say(`5. a file-backed A/B device in ${device}, booted from A:`);
    const steps = await runDeviceDemo(device, bundles, say);
    const have = new Set(b1!.images.get('rootfs')!.index.chunks.map((c) => c.id));
    const chunks2 = b2!.images.get('rootfs')!.index.chunks;
    const missing = chunks2.filter((c) => !have.has(c.id));
    const needBytes = missing.reduce((n, c) => n + b2!.payload.get(c.id)!.length, 0);
    const summary = {
      dir,
      keyId: key.keyId,
      bundles,
      verified: v.images.map((i) => i.name),
      update: {
        from: '1.0.0',
        to: '1.1.0',
        chunks: chunks2.length,
        missingChunks: missing.length,
        downloadBytes: needBytes,
        fullBytes: b2!.header.payloadLength,
      },
      osRelease: (await readFile(join(dir, 'rootfs-1.1.0/etc/os-release'), 'utf8')).trim(),
      device: { root: device, steps },
    };
    ctx.out.result(summary, () =>
      [
        `6. in the bundles, 1.1.0 shares all but ${missing.length} of its ${chunks2.length} chunks with 1.0.0: ${needBytes} of ${b2!.header.payloadLength} compressed bytes are new`,
        '',
        'Next (alias ferry=packages/cli/bin/ferry):',
        `  ferry status --root ${device}`,
        `  ferry bundle info ${bundles[1]}`,
        `  ferry bundle verify --keyring ${keyPrefix}.pub ${bundles[1]}`,
      ].join('\n'),
    );
  },
};
