/** `ferry image build`: a rootfs becomes a reproducible squashfs or erofs image. */
import { buildImage, type ImageFormat } from '@ferry/builder';
import { FerryError } from '@ferry/core';
import { str, type CommandSpec } from './command.ts';

export const imageBuild: CommandSpec = {
  name: 'image build',
  summary: 'Build a reproducible squashfs or erofs image from a rootfs',
  description:
    'The rootfs may be a directory, a tarball (.tar, .tar.gz, .tar.zst), an OCI image layout directory or a docker-archive tarball (`docker save`). Layers are applied in order with whiteouts. The same input gives a byte-identical image: timestamps come from --source-date-epoch or SOURCE_DATE_EPOCH (default 0). Archive paths that escape the root are refused.',
  options: {
    from: {
      type: 'string',
      placeholder: 'PATH',
      description: 'rootfs directory, tarball, OCI layout or docker archive',
    },
    format: {
      type: 'string',
      placeholder: 'FORMAT',
      description: 'squashfs or erofs',
      default: 'squashfs',
    },
    out: { type: 'string', placeholder: 'FILE', description: 'image file to write' },
    tree: {
      type: 'string',
      placeholder: 'FILE',
      description:
        'also write the tree listing of the image (for deployments; `bundle create` picks up FILE.tree beside the image)',
    },
    compression: {
      type: 'string',
      placeholder: 'ALG',
      description:
        'squashfs: gzip (GRUB can read it), xz, lzo, lz4, zstd, none (for delta updates); erofs: lz4hc, lz4, none',
    },
    'source-date-epoch': {
      type: 'string',
      placeholder: 'SECONDS',
      description: 'timestamp for every file and the superblock',
    },
    platform: {
      type: 'string',
      placeholder: 'OS/ARCH',
      description: 'platform to pick from a multi-platform OCI index',
      default: 'linux/amd64',
    },
  },
  json: true,
  examples: [
    'ferry image build --from rootfs/ --format squashfs --out rootfs.sqfs',
    'ferry image build --from oci-dir/ --format erofs --out rootfs.erofs',
    'ferry image build --from rootfs/ --out rootfs.sqfs --tree rootfs.sqfs.tree',
  ],
  async run(ctx) {
    const from = str(ctx, 'from');
    const out = str(ctx, 'out');
    if (!from || !out) throw new FerryError('USAGE', '--from and --out are required');
    const format = (str(ctx, 'format') ?? 'squashfs') as ImageFormat;
    if (format !== 'squashfs' && format !== 'erofs')
      throw new FerryError('USAGE', `--format must be squashfs or erofs, not ${String(format)}`);
    const epoch = str(ctx, 'source-date-epoch');
    if (epoch !== undefined && !/^\d+$/.test(epoch))
      throw new FerryError('USAGE', '--source-date-epoch must be a non-negative integer');
    const bar = ctx.out.progress('build');
    const compression = str(ctx, 'compression');
    const treeOut = str(ctx, 'tree');
    const r = await buildImage({
      from,
      out,
      format,
      ...(epoch !== undefined ? { sourceDateEpoch: Number(epoch) } : {}),
      ...(compression ? { compression } : {}),
      ...(treeOut ? { treeOut } : {}),
      platform: str(ctx, 'platform') ?? 'linux/amd64',
      onProgress: (e) => bar.update(e.done, e.total ?? e.done, e.phase),
    });
    bar.done();
    ctx.out.result(
      r,
      () =>
        `built ${r.path}: ${r.format} from ${r.inputKind}, ${r.size} bytes\nsha256 ${r.sha256}` +
        (r.tree ? `\ntree ${r.tree.sha256} (${r.tree.entries} entries) in ${r.tree.path}` : ''),
    );
  },
};
