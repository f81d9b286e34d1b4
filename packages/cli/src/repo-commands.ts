/** `ferry repo ...`: the static TUF repository on a build host. Thin wrappers over @ferry/repo. */
import { FerryError, loadKeyring, loadPrivateKey, type PrivateKey } from '@ferry/core';
import {
  gc,
  initRepo,
  promote,
  publishBundle,
  refresh,
  rotateKeys,
  verifyRepo,
  type TopLevelRole,
  type SigningKeys,
} from '@ferry/repo';
import {
  flag,
  str,
  strs,
  type CommandContext,
  type CommandSpec,
  type OptionSpec,
} from './command.ts';

const KEY_OPTIONS: Record<string, OptionSpec> = {
  'targets-key': {
    type: 'string',
    multiple: true,
    placeholder: 'KEY',
    description: 'targets role private key (offline)',
  },
  'snapshot-key': {
    type: 'string',
    placeholder: 'KEY',
    description: 'snapshot role private key (online)',
  },
  'timestamp-key': {
    type: 'string',
    placeholder: 'KEY',
    description: 'timestamp role private key (online)',
  },
};

async function one(ctx: CommandContext, name: string): Promise<PrivateKey> {
  const path = str(ctx, name);
  if (!path) throw new FerryError('USAGE', `--${name} is required`);
  return loadPrivateKey(path);
}

async function many(ctx: CommandContext, name: string, required: boolean): Promise<PrivateKey[]> {
  const paths = strs(ctx, name);
  if (required && paths.length === 0)
    throw new FerryError('USAGE', `at least one --${name} is required`);
  return Promise.all(paths.map((p) => loadPrivateKey(p)));
}

async function signingKeys(ctx: CommandContext): Promise<SigningKeys> {
  return {
    targets: await many(ctx, 'targets-key', true),
    snapshot: await one(ctx, 'snapshot-key'),
    timestamp: await one(ctx, 'timestamp-key'),
  };
}

function dir(ctx: CommandContext): string {
  return ctx.positionals[0]!;
}

const DIR = { name: 'DIR', description: 'repository directory (what the web server serves)' };

export const repoInit: CommandSpec = {
  name: 'repo init',
  summary: 'Create a static TUF repository any web server or CDN can serve',
  description:
    'Writes signed root, targets, snapshot and timestamp metadata (consistent snapshots) and an empty shared chunk store. Root and targets keys belong offline; snapshot and timestamp keys are online (see docs/repository.md).',
  positionals: [DIR],
  options: {
    'root-key': {
      type: 'string',
      multiple: true,
      placeholder: 'KEY',
      description: 'root role private key (offline; repeat for a threshold)',
    },
    'root-threshold': {
      type: 'string',
      placeholder: 'N',
      description: 'signatures root needs',
      default: '1',
    },
    ...KEY_OPTIONS,
  },
  json: true,
  examples: [
    'ferry repo init --root-key keys/root.key --targets-key keys/targets.key --snapshot-key keys/snapshot.key --timestamp-key keys/timestamp.key /srv/ferry',
  ],
  async run(ctx) {
    const t = str(ctx, 'root-threshold') ?? '1';
    if (!/^[1-9]\d*$/.test(t))
      throw new FerryError('USAGE', '--root-threshold must be a positive integer');
    const r = await initRepo(dir(ctx), {
      keys: {
        root: await many(ctx, 'root-key', true),
        targets: await many(ctx, 'targets-key', true),
        snapshot: await one(ctx, 'snapshot-key'),
        timestamp: await one(ctx, 'timestamp-key'),
      },
      thresholds: { root: Number(t) },
    });
    ctx.out.result(
      r,
      () =>
        `initialised ${dir(ctx)}: root expires ${r.expires.root}, timestamp ${r.expires.timestamp}`,
    );
  },
};

function treeSources(specs: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const s of specs) {
    const m = /^([a-z][a-z0-9_-]{0,31})=(.+)$/.exec(s);
    if (!m || Object.hasOwn(out, m[1]!))
      throw new FerryError('USAGE', `--tree-from wants CLASS=DIR, once per class, got '${s}'`);
    out[m[1]!] = m[2]!;
  }
  return out;
}

export const repoPublish: CommandSpec = {
  name: 'repo publish',
  summary: 'Publish a bundle into a channel (chunks go to the shared store)',
  positionals: [DIR, { name: 'BUNDLE', description: 'signed bundle file' }],
  options: {
    channel: {
      type: 'string',
      placeholder: 'NAME',
      description: 'channel (stable, beta, nightly, ...)',
      default: 'stable',
    },
    keyring: {
      type: 'string',
      placeholder: 'PATH',
      description: 'keys the bundle must be signed with (devices refuse anything else)',
    },
    force: {
      type: 'boolean',
      description: 'publish even if the release counter is not above the channel highest',
    },
    'tree-from': {
      type: 'string',
      multiple: true,
      placeholder: 'CLASS=DIR',
      description:
        "the tree of an image (its rootfs dir, or a read-only mount of it): must scan to the manifest's tree digest; its file objects are stored for deployments",
    },
    ...KEY_OPTIONS,
  },
  json: true,
  examples: [
    'ferry repo publish --keyring keys/release.pub --tree-from rootfs=build/rootfs --targets-key keys/targets.key --snapshot-key keys/snapshot.key --timestamp-key keys/timestamp.key /srv/ferry gw-1.2.0.fbd',
  ],
  async run(ctx) {
    const kr = str(ctx, 'keyring');
    if (!kr) throw new FerryError('USAGE', '--keyring is required');
    const r = await publishBundle(dir(ctx), ctx.positionals[1]!, {
      channel: str(ctx, 'channel') ?? 'stable',
      keyring: await loadKeyring(kr),
      keys: await signingKeys(ctx),
      force: flag(ctx, 'force'),
      trees: treeSources(strs(ctx, 'tree-from')),
    });
    const trees = r.trees.map(
      (t) =>
        `\ntree ${t.image} ${t.digest.slice(0, 16)}: ${t.objects.added} of ${t.objects.total} objects new (${t.objects.storedBytes} bytes stored)`,
    );
    ctx.out.result(
      r,
      () =>
        `${r.published ? 'published' : 'already published'} ${r.compatible} ${r.version} (#${r.releaseCounter}) in ${r.channel}: ${r.chunks.added} of ${r.chunks.total} chunks new (${r.chunks.addedBytes} bytes)${trees.join('')}`,
    );
  },
};

export const repoPromote: CommandSpec = {
  name: 'repo promote',
  summary: 'Copy a release from one channel to another',
  positionals: [DIR, { name: 'RELEASE', description: 'compatible@version' }],
  options: {
    from: { type: 'string', placeholder: 'CHANNEL', description: 'source channel' },
    to: { type: 'string', placeholder: 'CHANNEL', description: 'destination channel' },
    force: {
      type: 'boolean',
      description: 'promote even if the release counter is not above the destination highest',
    },
    ...KEY_OPTIONS,
  },
  json: true,
  async run(ctx) {
    const from = str(ctx, 'from');
    const to = str(ctx, 'to');
    if (!from || !to) throw new FerryError('USAGE', '--from and --to are required');
    const r = await promote(dir(ctx), {
      release: ctx.positionals[1]!,
      from,
      to,
      keys: await signingKeys(ctx),
      force: flag(ctx, 'force'),
    });
    ctx.out.result(r, () => `promoted ${r.compatible} ${r.version} from ${from} to ${to}`);
  },
};

export const repoRefresh: CommandSpec = {
  name: 'repo refresh',
  summary: 'Re-sign snapshot and timestamp before they expire (run from cron)',
  positionals: [DIR],
  options: {
    'snapshot-key': KEY_OPTIONS['snapshot-key']!,
    'timestamp-key': KEY_OPTIONS['timestamp-key']!,
  },
  json: true,
  async run(ctx) {
    const r = await refresh(dir(ctx), {
      snapshotKey: await one(ctx, 'snapshot-key'),
      timestampKey: await one(ctx, 'timestamp-key'),
    });
    ctx.out.result(
      r,
      () =>
        `snapshot v${r.snapshotVersion} until ${r.snapshotExpires}, timestamp v${r.timestampVersion} until ${r.timestampExpires}`,
    );
  },
};

const ROLES: TopLevelRole[] = ['root', 'targets', 'snapshot', 'timestamp'];

export const repoKeysRotate: CommandSpec = {
  name: 'repo keys rotate',
  summary: 'Replace the keys of a top-level role (root, targets, snapshot, timestamp)',
  description:
    'Writes root N+1 naming the new keys, signed by a threshold of the current root keys (and, for root, by the new keys too), so devices walk from the old root to the new one. Rotating targets re-signs targets and the channels that used the old targets keys; rotating snapshot or timestamp re-signs it at once. Keep the old root keys offline until every device has updated.',
  positionals: [DIR, { name: 'ROLE', description: ROLES.join(', ') }],
  options: {
    'root-key': {
      type: 'string',
      multiple: true,
      placeholder: 'KEY',
      description: 'a current root private key (give the root threshold of them)',
    },
    'new-key': {
      type: 'string',
      multiple: true,
      placeholder: 'KEY',
      description: "the role's new private key (repeat; exactly one for snapshot/timestamp)",
    },
    threshold: {
      type: 'string',
      placeholder: 'N',
      description: 'signatures the role needs (default 1)',
    },
    'snapshot-key': KEY_OPTIONS['snapshot-key']!,
    'timestamp-key': KEY_OPTIONS['timestamp-key']!,
  },
  json: true,
  examples: [
    'ferry repo keys rotate /srv/ferry root --root-key old-root.key --new-key r1.key --new-key r2.key --new-key r3.key --threshold 2 --snapshot-key snapshot.key --timestamp-key timestamp.key',
  ],
  async run(ctx) {
    const role = ctx.positionals[1] as TopLevelRole;
    if (!ROLES.includes(role))
      throw new FerryError('USAGE', `ROLE must be one of ${ROLES.join(', ')}, not '${role}'`);
    const t = str(ctx, 'threshold');
    if (t !== undefined && !/^[1-9]\d{0,2}$/.test(t))
      throw new FerryError('USAGE', '--threshold wants a positive number');
    const snapshotKey = str(ctx, 'snapshot-key') ? await one(ctx, 'snapshot-key') : undefined;
    const timestampKey = str(ctx, 'timestamp-key') ? await one(ctx, 'timestamp-key') : undefined;
    const r = await rotateKeys(dir(ctx), role, {
      rootKeys: await many(ctx, 'root-key', true),
      newKeys: await many(ctx, 'new-key', true),
      ...(t ? { threshold: Number(t) } : {}),
      ...(snapshotKey ? { snapshotKey } : {}),
      ...(timestampKey ? { timestampKey } : {}),
    });
    ctx.out.result(
      { role, ...r },
      () => `${role} now has keys ${r.keyIds.join(', ')} (root v${r.rootVersion})`,
    );
  },
};

export const repoVerify: CommandSpec = {
  name: 'repo verify',
  summary: 'Check every signature, version, expiry, target and chunk of a repository',
  positionals: [DIR],
  options: {
    'trusted-root': {
      type: 'string',
      placeholder: 'FILE',
      description: 'the root a device trusts (usually DIR/metadata/1.root.json)',
    },
    keyring: {
      type: 'string',
      placeholder: 'PATH',
      description: 'also check each release manifest against this bundle keyring',
    },
    deep: {
      type: 'boolean',
      description: 'also decompress and re-hash every file object of the published trees',
    },
  },
  json: true,
  async run(ctx) {
    const root = str(ctx, 'trusted-root') ?? `${dir(ctx)}/metadata/1.root.json`;
    const kr = str(ctx, 'keyring');
    const r = await verifyRepo(dir(ctx), {
      trustedRoot: root,
      ...(kr ? { keyring: await loadKeyring(kr) } : {}),
      deep: flag(ctx, 'deep'),
    });
    ctx.out.result(
      r,
      () => `verified ${dir(ctx)}: root v${r.rootVersion}, timestamp v${r.timestampVersion}`,
    );
  },
};

export const repoGc: CommandSpec = {
  name: 'repo gc',
  summary: 'Delete chunks, tree listings and file objects no published release references',
  positionals: [DIR],
  options: { 'dry-run': { type: 'boolean', description: 'only count what would be deleted' } },
  json: true,
  async run(ctx) {
    const r = await gc(dir(ctx), { dryRun: flag(ctx, 'dry-run') });
    ctx.out.result(
      r,
      () =>
        `kept ${r.kept} chunks, ${flag(ctx, 'dry-run') ? 'would delete' : 'deleted'} ${r.deleted} (${r.deletedBytes} bytes)`,
    );
  },
};
