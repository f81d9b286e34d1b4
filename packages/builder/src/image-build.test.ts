import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync, zstdCompressSync } from 'node:zlib';
import { encodeTree, isFerryError, scanTree, treeDigest, type TreeEntry } from '@ferry/core';
import { needs } from '@ferry/testing';
import {
  erofsListing,
  erofsStat,
  mountedListing,
  squashfsCat,
  squashfsListing,
  UTC,
} from './fixtures/inspect.ts';
import { makeDockerArchive, MERGED, writeOciLayout } from './fixtures/oci-fixture.ts';
import { SAMPLE_ROOTFS } from './fixtures/sample-rootfs.ts';
import { makeTar } from './fixtures/tar-writer.ts';
import { buildImage, type BuildImageOptions } from './image-build.ts';
import type { ImageFormat } from './image-tool.ts';
import { runTool } from './spawn.ts';

const EPOCH = 1700000000; // 2023-11-14 22:13:20 UTC
const TOOLS = { squashfs: ['mksquashfs', 'unsquashfs'], erofs: ['mkfs.erofs'] } as const;
const FORMATS: ImageFormat[] = ['squashfs', 'erofs'];
const listing = (f: ImageFormat, img: string) =>
  f === 'squashfs' ? squashfsListing(img) : erofsListing(img);

async function scanMounted(img: string, format: ImageFormat) {
  const mnt = mkdtempSync(join(tmpdir(), 'ferry-mnt-'));
  await runTool('mount', ['-t', format, '-o', 'loop,ro', img, mnt]);
  try {
    return await scanTree(mnt);
  } finally {
    await runTool('umount', [mnt]);
    rmSync(mnt, { recursive: true, force: true });
  }
}

let base = '';
let n = 0;
const input: Record<string, string> = {};
function build(o: Partial<BuildImageOptions> & Pick<BuildImageOptions, 'from' | 'format'>) {
  return buildImage({ out: join(base, 'out', `${n++}.img`), sourceDateEpoch: EPOCH, ...o });
}

describe('buildImage', () => {
  before(() => {
    base = mkdtempSync(join(tmpdir(), 'ferry-build-test-'));
    mkdirSync(join(base, 'out'));
    const tar = makeTar(SAMPLE_ROOTFS);
    input.tar = join(base, 'rootfs.tar');
    input['tar.gz'] = join(base, 'rootfs.tar.gz');
    input['tar.zst'] = join(base, 'rootfs.tar.zst');
    writeFileSync(input.tar, tar);
    writeFileSync(input['tar.gz'], gzipSync(tar));
    writeFileSync(input['tar.zst'], zstdCompressSync(tar));
    // The directory comes from GNU tar, not from Ferry's extractor: an independent reference.
    input.dir = join(base, 'rootfs');
    mkdirSync(input.dir);
    if (process.getuid?.() === 0) {
      const r = spawnSync('tar', [
        '--xattrs',
        '--xattrs-include=*',
        '--numeric-owner',
        '-xpf',
        input.tar,
        '-C',
        input.dir,
      ]);
      assert.equal(r.status, 0, r.stderr.toString());
    }
    input.oci = join(base, 'layout');
    writeOciLayout(input.oci);
    input.ocitar = join(base, 'layout.tar');
    assert.equal(spawnSync('tar', ['-C', input.oci, '-cf', input.ocitar, '.']).status, 0);
    input.docker = join(base, 'docker.tar');
    writeFileSync(input.docker, makeDockerArchive());
  });
  after(() => rmSync(base, { recursive: true, force: true }));

  for (const format of FORMATS)
    describe(`when the same input is built twice as ${format}`, () => {
      for (const kind of ['dir', 'tar', 'tar.gz', 'tar.zst', 'oci'])
        it(
          `gives byte-identical images from ${kind}`,
          needs('root', 'mknod', 'setfattr', ...TOOLS[format]),
          async (t) => {
            const a = await build({ from: input[kind]!, format });
            // Fresh mtimes on the source must not leak into the image.
            if (kind === 'dir') utimesSync(join(input.dir!, 'etc'), new Date(), new Date());
            const b = await build({ from: input[kind]!, format });
            t.diagnostic(`${format} from ${kind}: ${a.sha256} ${b.sha256} (${a.size} bytes)`);
            assert.equal(a.sha256, b.sha256);
            assert.ok(readFileSync(a.path).equals(readFileSync(b.path)));
          },
        );
      it(
        'gives a different image for a different SOURCE_DATE_EPOCH',
        needs('root', 'mknod', 'setfattr', ...TOOLS[format]),
        async () => {
          const a = await build({ from: input.tar!, format });
          const b = await build({ from: input.tar!, format, sourceDateEpoch: EPOCH + 1 });
          assert.notEqual(a.sha256, b.sha256);
        },
      );
    });

  for (const format of FORMATS)
    describe(`when a directory and a tar of the same tree are built as ${format}`, () => {
      it(
        'lists the same inodes',
        needs('root', 'mknod', 'setfattr', ...TOOLS[format]),
        async () => {
          const fromDir = await build({ from: input.dir!, format });
          const fromTar = await build({ from: input.tar!, format });
          assert.equal(fromDir.inputKind, 'directory');
          assert.equal(fromTar.inputKind, 'tar');
          const l = await listing(format, fromDir.path);
          assert.ok(l.length >= SAMPLE_ROOTFS.length - 1);
          assert.deepEqual(await listing(format, fromTar.path), l);
          // Stronger than the listing: GNU tar's tree and Ferry's staging give the same bytes.
          assert.equal(fromTar.sha256, fromDir.sha256);
        },
      );
      it(
        'mounts to the same exact tree',
        needs('root', 'loop', 'mknod', 'setfattr', ...TOOLS[format]),
        async () => {
          const a = await mountedListing((await build({ from: input.dir!, format })).path, format);
          const b = await mountedListing((await build({ from: input.tar!, format })).path, format);
          assert.deepEqual(b, a);
        },
      );
    });

  describe('when a tar is built as squashfs', () => {
    it(
      'keeps owners, modes, links, nodes and content with fixed times',
      needs('root', 'mknod', 'setfattr', 'mksquashfs', 'unsquashfs'),
      async () => {
        const img = await build({ from: input.tar!, format: 'squashfs' });
        const l = await squashfsListing(img.path);
        for (const want of [
          '-rwsr-xr-x 0/0 500 2023-11-14 22:13 /usr/bin/su',
          'crw-rw-rw- 0/0 1, 3 2023-11-14 22:13 /dev/null',
          'prw------- 0/0 0 2023-11-14 22:13 /dev/initctl',
          'lrwxrwxrwx 0/0 11 2023-11-14 22:13 /etc/passwd-link -> /etc/passwd',
          'drwx------ 1000/1000 32 2023-11-14 22:13 /home/user',
          'drwxrwxrwt 0/0 3 2023-11-14 22:13 /tmp',
          '-rw-r----- 0/42 15 2023-11-14 22:13 /etc/shadow',
        ])
          assert.ok(l.includes(want), `missing: ${want}\n${l.join('\n')}`);
        assert.ok(l.every((line) => line.includes('2023-11-14 22:13')));
        assert.equal(await squashfsCat(img.path, 'etc/hostname'), 'ferry\n');
      },
    );
  });

  describe('when a tar is built as erofs', () => {
    it(
      'keeps owners, links, nodes and a hardlink as one inode',
      needs('root', 'mknod', 'setfattr', 'mkfs.erofs'),
      async () => {
        const img = await build({ from: input['tar.zst']!, format: 'erofs' });
        const su = await erofsStat(img.path, '/usr/bin/su');
        const link = await erofsStat(img.path, '/usr/bin/su-hardlink');
        assert.equal(su.NID, link.NID);
        assert.equal(su.Links, '2');
        assert.deepEqual(
          [
            (await erofsStat(img.path, '/home/user')).Uid,
            (await erofsStat(img.path, '/etc/shadow')).Gid,
          ],
          ['1000', '42'],
        );
        const l = await erofsListing(img.path);
        assert.ok(l.some((x) => x.startsWith('/dev/null type=3 ')));
        assert.ok(l.some((x) => x.startsWith('/dev/initctl type=5 ')));
        assert.ok(l.some((x) => x.startsWith('/etc/passwd-link type=7 ')));
        const { stdout } = await runTool('dump.erofs', ['-s', img.path], { env: UTC });
        assert.match(stdout, /created:\s+Tue Nov 14 22:13:20 2023/);
        assert.match(stdout, /UUID:\s+[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-/);
      },
    );
  });

  for (const format of FORMATS)
    describe(`when a tar is built as ${format} and mounted`, () => {
      it(
        'has setuid, sticky, xattrs (user. and security.capability) and epoch mtimes',
        needs('root', 'loop', 'mknod', 'setfattr', ...TOOLS[format]),
        async () => {
          const l = await mountedListing((await build({ from: input.tar!, format })).path, format);
          const line = (p: string) => l.find((x) => x.startsWith(`${p} `)) ?? '';
          assert.match(line('/usr/bin/su'), /mode=104755 0:0 size=500 .*ino=\/usr\/bin\/su /);
          assert.match(line('/usr/bin/su-hardlink'), /ino=\/usr\/bin\/su /);
          assert.match(line('/tmp'), /mode=41777 /);
          assert.match(line('/usr/bin/ping'), /security\.capability=0x0100000200200000/);
          assert.match(line('/usr/bin/dash'), /user\.origin=0x64656269616e/);
          assert.match(line('/dev/null'), /mode=20666 .*rdev=259 /);
          assert.ok(l.every((x) => x.includes(`mtime=${EPOCH}`)));
        },
      );
    });

  for (const format of FORMATS)
    describe(`when a tar is built as ${format} with a tree listing`, () => {
      it(
        'writes the listing of exactly the tree a read-only mount of the image shows',
        needs('root', 'loop', 'mknod', 'setfattr', ...TOOLS[format]),
        async () => {
          const treeOut = join(base, 'out', `tree-${format}.tree`);
          const img = await build({ from: input.tar!, format, treeOut });
          const written = readFileSync(treeOut);
          assert.deepEqual(img.tree, {
            path: treeOut,
            sha256: treeDigest(written),
            size: written.length,
            entries: SAMPLE_ROOTFS.length,
          });
          const mounted = await scanMounted(img.path, format);
          assert.equal(treeDigest(encodeTree(mounted)), img.tree.sha256);
          const ping = mounted.entries.find((e: TreeEntry) => e.path === 'usr/bin/ping');
          assert.ok(ping?.xattrs?.['security.capability']);
        },
      );
    });

  for (const format of FORMATS)
    describe(`when a directory with POSIX ACLs is built as ${format} with a tree listing`, () => {
      it(
        'lists only the xattrs the image keeps, so the mount still matches',
        needs('root', 'loop', 'setfattr', ...TOOLS[format]),
        async () => {
          const from = join(base, `acl-${format}`);
          mkdirSync(join(from, 'etc'), { recursive: true });
          writeFileSync(join(from, 'etc', 'secret'), 'x\n');
          // user 1000 may read: ACL_USER_OBJ rw-, ACL_USER 1000 r--, ACL_GROUP_OBJ r--, mask, other.
          const acl = '0sAgAAAAEABgD/////AgAEAOgDAAAEAAQA/////xAABAD/////IAAEAP////8=';
          for (const [name, value] of [
            ['system.posix_acl_access', acl],
            ['user.note', 'kept'],
          ])
            await runTool('setfattr', ['-n', name!, '-v', value!, join(from, 'etc', 'secret')]);
          const treeOut = join(base, 'out', `acl-${format}.tree`);
          const img = await build({ from, format, treeOut });
          const listed = await scanTree(from);
          const secret = (l: { entries: TreeEntry[] }) =>
            l.entries.find((e) => e.path === 'etc/secret')!;
          assert.ok(secret(listed).xattrs?.['system.posix_acl_access']);
          const mounted = await scanMounted(img.path, format);
          assert.equal(treeDigest(encodeTree(mounted)), img.tree!.sha256);
          assert.equal(
            'system.posix_acl_access' in (secret(mounted).xattrs ?? {}),
            format === 'erofs',
          );
        },
      );
    });

  describe('when the input is a layered image', () => {
    for (const [kind, key] of [
      ['oci-layout', 'oci'],
      ['oci-layout', 'ocitar'],
      ['docker-archive', 'docker'],
    ] as const)
      it(
        `applies the ${kind} layers of ${key} with whiteouts`,
        needs('root', 'mksquashfs', 'unsquashfs'),
        async () => {
          const img = await build({ from: input[key]!, format: 'squashfs' });
          assert.deepEqual([img.inputKind, img.layers], [kind, 3]);
          const paths = (await squashfsListing(img.path))
            .map((x) => x.split(' ').at(-1)!)
            .filter((p) => p !== '/');
          assert.deepEqual(
            paths,
            Object.keys(MERGED).map((p) => `/${p.replace(/\/$/, '')}`),
          );
          assert.equal(await squashfsCat(img.path, 'c/inner'), 'inner\n');
        },
      );
    it(
      'gives the same image from the OCI layout and the docker-archive',
      needs('root', 'mkfs.erofs'),
      async () => {
        const a = await build({ from: input.oci!, format: 'erofs' });
        const b = await build({ from: input.docker!, format: 'erofs' });
        assert.equal(a.sha256, b.sha256);
      },
    );
  });

  describe('when an OCI layer blob is corrupted', () => {
    it(
      'fails with IMAGE_INPUT_INVALID and leaves nothing behind',
      needs('root', 'mksquashfs'),
      async () => {
        const dir = join(base, 'corrupt-layout');
        const fx = writeOciLayout(dir);
        const blob = join(dir, 'blobs', 'sha256', fx.layerDigests[2]!.slice(7));
        const bytes = readFileSync(blob);
        bytes.writeUInt8(bytes.readUInt8(bytes.length - 5) ^ 0x55, bytes.length - 5);
        writeFileSync(blob, bytes);
        const work = mkdtempSync(join(base, 'work-'));
        const out = join(base, 'corrupt.img');
        await assert.rejects(build({ from: dir, format: 'squashfs', out, workDir: work }), (e) =>
          isFerryError(e, 'IMAGE_INPUT_INVALID'),
        );
        assert.deepEqual(readdirSync(work), []);
        assert.ok(!existsSync(out));
      },
    );
  });

  describe('when a tar writes through a symlink to the host', () => {
    it('fails with IMAGE_PATH_TRAVERSAL before any tool runs', needs('root'), async () => {
      const sentinel = mkdtempSync(join(base, 'sentinel-'));
      const hostile = join(base, 'hostile.tar');
      writeFileSync(
        hostile,
        makeTar([
          { name: 'link', type: 'symlink', linkname: sentinel },
          { name: 'link/pwned', data: 'x' },
        ]),
      );
      const work = mkdtempSync(join(base, 'work-'));
      await assert.rejects(build({ from: hostile, format: 'squashfs', workDir: work }), (e) =>
        isFerryError(e, 'IMAGE_PATH_TRAVERSAL'),
      );
      assert.deepEqual(readdirSync(sentinel), []);
      assert.deepEqual(readdirSync(work), []);
    });
  });

  describe('when the mkfs tool is not installed', () => {
    it('fails with TOOL_MISSING', async () => {
      const saved = process.env.PATH;
      process.env.PATH = join(base, 'no-tools-here');
      try {
        await assert.rejects(build({ from: input.dir!, format: 'squashfs' }), (e) =>
          isFerryError(e, 'TOOL_MISSING'),
        );
      } finally {
        process.env.PATH = saved;
      }
    });
  });

  describe('when options are wrong', () => {
    const bad: [string, Partial<BuildImageOptions>][] = [
      ['zstd for erofs', { format: 'erofs', compression: 'zstd' }],
      ['an unknown format', { format: 'ext4' as ImageFormat }],
      ['a negative epoch', { format: 'squashfs', sourceDateEpoch: -1 }],
      ['a malformed platform', { format: 'squashfs', platform: 'amd64' }],
    ];
    for (const [what, o] of bad)
      it(`refuses ${what} with USAGE`, async () => {
        await assert.rejects(build({ from: input.tar!, format: 'squashfs', ...o }), (e) =>
          isFerryError(e, 'USAGE'),
        );
      });
    it('refuses an output inside the input directory with USAGE', async () => {
      await assert.rejects(
        buildImage({ from: input.dir!, format: 'squashfs', out: join(input.dir!, 'x.img') }),
        (e) => isFerryError(e, 'USAGE'),
      );
    });
  });

  describe('when SOURCE_DATE_EPOCH is set and no epoch is passed', () => {
    it('uses it', needs('root', 'mksquashfs', 'unsquashfs'), async () => {
      const saved = process.env.SOURCE_DATE_EPOCH;
      process.env.SOURCE_DATE_EPOCH = '86400';
      try {
        const img = await buildImage({
          from: input.oci!,
          format: 'squashfs',
          out: join(base, 'out', 'env.img'),
        });
        assert.ok((await squashfsListing(img.path)).every((l) => l.includes('1970-01-02 00:00')));
      } finally {
        if (saved === undefined) delete process.env.SOURCE_DATE_EPOCH;
        else process.env.SOURCE_DATE_EPOCH = saved;
      }
    });
  });
});
