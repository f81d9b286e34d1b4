/** `ferry bundle create|info|verify`: signed single-file releases for USB, offline and plain web servers. */
import {
  createBundle,
  FerryError,
  loadKeyring,
  loadPrivateKey,
  openBundle,
  openSource,
  verifyBundle,
  type BundleImageInput,
  type OpenedBundle,
} from '@ferry/core';
import { existsSync } from 'node:fs';
import { str, strs, type CommandSpec, type OptionSpec } from './command.ts';

const KEYRING_OPTION: OptionSpec = {
  type: 'string',
  placeholder: 'PATH',
  description:
    'trusted keys: a dir of .pub files (+ optional `threshold` file), a JSON keyring, or one .pub',
};

function classPairs(flag: string, specs: string[]): Array<[string, string]> {
  return specs.map((s) => {
    const m = /^([a-z][a-z0-9_-]{0,31})=(.+)$/.exec(s);
    if (!m)
      throw new FerryError(
        'USAGE',
        `--${flag} wants CLASS=FILE (class like rootfs, boot, app), got '${s}'`,
      );
    return [m[1]!, m[2]!];
  });
}

/** Images with their tree listings: given by --tree, else FILE.tree beside the image if present. */
function parseImages(specs: string[], treeSpecs: string[]): BundleImageInput[] {
  if (specs.length === 0)
    throw new FerryError('USAGE', 'at least one --image CLASS=FILE is required');
  const images = classPairs('image', specs);
  const trees = new Map(classPairs('tree', treeSpecs));
  for (const name of trees.keys())
    if (!images.some(([n]) => n === name))
      throw new FerryError('USAGE', `--tree ${name}=... names no --image class`);
  return images.map(([name, path]) => {
    const tree = trees.get(name) ?? (existsSync(`${path}.tree`) ? `${path}.tree` : undefined);
    return { name, path, ...(tree !== undefined ? { tree } : {}) };
  });
}

function parseCounter(v: string | undefined): number {
  if (v === undefined || !/^\d+$/.test(v) || !Number.isSafeInteger(Number(v)))
    throw new FerryError('USAGE', '--release-counter must be a non-negative integer');
  return Number(v);
}

export const bundleCreate: CommandSpec = {
  name: 'bundle create',
  summary: 'Create a signed bundle from one or more images',
  description:
    'Chunks every image (content-defined), compresses each distinct chunk once, signs the release manifest with every --key, and writes one file whose header, manifest and chunk indexes come first, so a device can fetch any chunk of it with an HTTP range request.',
  options: {
    image: {
      type: 'string',
      multiple: true,
      placeholder: 'CLASS=FILE',
      description:
        'an image for a slot class (rootfs, boot, app, ...); type detected from the file',
    },
    tree: {
      type: 'string',
      multiple: true,
      placeholder: 'CLASS=LISTING',
      description:
        "the tree listing of an image (`image build --tree`), signed in the manifest for deployments; default: the image's FILE.tree if it exists",
    },
    compatible: {
      type: 'string',
      placeholder: 'STRING',
      description: 'device class the release is for; devices refuse other classes',
    },
    version: { type: 'string', placeholder: 'SEMVER', description: 'release version, SemVer 2.0' },
    'release-counter': {
      type: 'string',
      placeholder: 'N',
      description: 'monotonic release number; devices refuse a lower one (downgrade)',
    },
    key: {
      type: 'string',
      multiple: true,
      placeholder: 'KEY',
      description: 'private key file to sign with',
    },
    out: { type: 'string', placeholder: 'FILE', description: 'bundle file to write' },
    description: { type: 'string', placeholder: 'TEXT', description: 'free text shown by info' },
    created: {
      type: 'string',
      placeholder: 'RFC3339',
      description: 'creation time (default: SOURCE_DATE_EPOCH, else now)',
    },
  },
  json: true,
  examples: [
    'ferry bundle create --image rootfs=rootfs.sqfs --compatible acme-gw --version 1.2.0 --release-counter 12 --key keys/release-1.key --out gw-1.2.0.fbd',
  ],
  async run(ctx) {
    const out = str(ctx, 'out');
    const compatible = str(ctx, 'compatible');
    const version = str(ctx, 'version');
    if (!out || !compatible || !version)
      throw new FerryError('USAGE', '--out, --compatible and --version are required');
    const keyFiles = strs(ctx, 'key');
    if (keyFiles.length === 0) throw new FerryError('USAGE', 'at least one --key is required');
    const keys = await Promise.all(keyFiles.map((k) => loadPrivateKey(k)));
    const bar = ctx.out.progress('chunk');
    const description = str(ctx, 'description');
    const created = str(ctx, 'created');
    const r = await createBundle({
      images: parseImages(strs(ctx, 'image'), strs(ctx, 'tree')),
      compatible,
      version,
      releaseCounter: parseCounter(str(ctx, 'release-counter')),
      keys,
      out,
      ...(description !== undefined ? { description } : {}),
      ...(created !== undefined ? { created } : {}),
      onProgress: (e) => bar.update(e.done, e.total, `chunk ${e.image}`),
    });
    bar.done();
    ctx.out.result(
      {
        path: r.path,
        size: r.size,
        chunks: r.chunks,
        uniqueChunks: r.uniqueChunks,
        payloadBytes: r.payloadBytes,
        manifest: r.manifest,
      },
      () =>
        `created ${r.path}: ${r.size} bytes, ${r.chunks} chunks (${r.uniqueChunks} distinct), ${r.manifest.compatible} ${r.manifest.version} #${r.manifest.releaseCounter}`,
    );
  },
};

function describe(b: OpenedBundle) {
  return {
    source: b.source.name,
    formatVersion: b.header.formatVersion,
    size: b.header.totalSize,
    payloadBytes: b.header.payloadLength,
    uniqueChunks: b.payload.size,
    signatures: b.envelope.signatures.map((s) => s.keyid),
    verifiedBy: b.verifiedBy,
    manifest: b.manifest,
  };
}

function humanInfo(b: OpenedBundle, verified: boolean): string {
  const m = b.manifest;
  const lines = [
    `bundle      ${b.source.name} (format ${b.header.formatVersion}, ${b.header.totalSize} bytes)`,
    `compatible  ${m.compatible}`,
    `version     ${m.version} (release counter ${m.releaseCounter})`,
    `created     ${m.created}`,
    ...(m.description ? [`description ${m.description}`] : []),
    `signatures  ${b.envelope.signatures.map((s) => s.keyid.slice(0, 16)).join(', ')} ${verified ? `(verified: ${b.verifiedBy.length})` : '(not checked: pass --keyring)'}`,
  ];
  for (const [name, img] of Object.entries(m.images))
    lines.push(
      `image ${name}: ${img.type}, ${img.size} bytes, ${img.chunkIndex.chunks} chunks`,
      `  sha256 ${img.sha256}`,
      `  verity ${img.verity.rootHash}`,
      ...(img.tree ? [`  tree   ${img.tree.sha256} (${img.tree.entries} entries)`] : []),
    );
  return lines.join('\n');
}

export const bundleInfo: CommandSpec = {
  name: 'bundle info',
  summary: 'Show the manifest and layout of a bundle (file or URL)',
  description:
    'Reads only the header, manifest and indexes (for a URL: a few range requests). With --keyring the signatures are checked too; `bundle verify` checks every byte.',
  positionals: [{ name: 'BUNDLE', description: 'bundle file or http(s) URL' }],
  options: {
    keyring: KEYRING_OPTION,
  },
  json: true,
  examples: [
    'ferry bundle info gw-1.2.0.fbd',
    'ferry bundle info --json https://updates.example.com/gw-1.2.0.fbd',
  ],
  async run(ctx) {
    const kr = str(ctx, 'keyring');
    const source = openSource(ctx.positionals[0]!);
    try {
      const b = await openBundle(source, kr ? { keyring: await loadKeyring(kr) } : {});
      ctx.out.result(describe(b), () => humanInfo(b, kr !== undefined));
    } finally {
      await source.close();
    }
  },
};

export const bundleVerify: CommandSpec = {
  name: 'bundle verify',
  summary: 'Check every signature, hash, chunk and verity root of a bundle',
  description:
    'Exits 0 only if the signature threshold of the keyring is met and every chunk, image SHA-256 and dm-verity root hash matches the signed manifest.',
  positionals: [{ name: 'BUNDLE', description: 'bundle file or http(s) URL' }],
  options: {
    keyring: KEYRING_OPTION,
  },
  json: true,
  examples: ['ferry bundle verify --keyring keys/ gw-1.2.0.fbd'],
  async run(ctx) {
    const kr = str(ctx, 'keyring');
    if (!kr) throw new FerryError('USAGE', '--keyring is required');
    const keyring = await loadKeyring(kr);
    const source = openSource(ctx.positionals[0]!);
    const bar = ctx.out.progress('verify');
    try {
      const r = await verifyBundle(source, keyring, (e) =>
        bar.update(e.done, e.total, `verify ${e.image}`),
      );
      bar.done();
      ctx.out.result({ ok: true, ...r }, () =>
        [
          `verified ${source.name}: ${r.manifest.compatible} ${r.manifest.version} #${r.manifest.releaseCounter}, signed by ${r.keyIds.length} of threshold ${keyring.threshold}`,
          ...r.images.map(
            (i) => `  ${i.name}: ${i.size} bytes, ${i.chunks} chunks, sha256 and verity ok`,
          ),
        ].join('\n'),
      );
    } finally {
      await source.close();
    }
  },
};
