import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { needs } from '@ferry/testing';
import { mountedListing, squashfsCat, squashfsListing } from './fixtures/inspect.ts';
import { buildImage } from './image-build.ts';

const EPOCH = 1700000000;
const tools = needs('mksquashfs', 'unsquashfs');

/** Text that gzip shrinks a lot, so its plain bytes show whether the image compressed it. */
const TEXT = Array.from({ length: 4000 }, (_, i) => `line ${i} of the ferry delta fixture\n`).join(
  '',
);

let base = '';
let tree = '';
let n = 0;
const build = (compression: string) =>
  buildImage({
    from: tree,
    out: join(base, `${n++}.sqfs`),
    format: 'squashfs',
    compression,
    sourceDateEpoch: EPOCH,
  });

describe('mksquashfs with --compression none', () => {
  before(() => {
    base = mkdtempSync(join(tmpdir(), 'ferry-sqfs-none-'));
    tree = join(base, 'rootfs');
    mkdirSync(join(tree, 'etc'), { recursive: true });
    mkdirSync(join(tree, 'usr', 'share', 'doc'), { recursive: true });
    writeFileSync(join(tree, 'etc', 'hostname'), 'ferry\n');
    writeFileSync(join(tree, 'usr', 'share', 'doc', 'notes.txt'), TEXT);
    // An xattr in the tree: the image then has an xattr table (stored with -noX).
    if (!needs('setfattr').skip)
      spawnSync('setfattr', ['-n', 'user.origin', '-v', 'ferry', join(tree, 'etc', 'hostname')]);
  });
  after(() => rmSync(base, { recursive: true, force: true }));

  describe('when the same tree is built twice', () => {
    it('gives byte-identical images', tools, async () => {
      const a = await build('none');
      utimesSync(join(tree, 'etc'), new Date(), new Date());
      const b = await build('none');
      assert.equal(a.sha256, b.sha256);
      assert.ok(readFileSync(a.path).equals(readFileSync(b.path)));
    });
  });

  describe('when the image is read back', () => {
    it('unsquashfs lists the tree and reads the files', tools, async () => {
      const img = await build('none');
      const l = await squashfsListing(img.path);
      for (const p of ['/etc/hostname', '/usr/share/doc/notes.txt'])
        assert.ok(
          l.some((x) => x.endsWith(` ${p}`)),
          `missing ${p}:\n${l.join('\n')}`,
        );
      assert.equal(await squashfsCat(img.path, 'usr/share/doc/notes.txt'), TEXT);
    });

    it('holds file data verbatim, unlike gzip', tools, async () => {
      const none = readFileSync((await build('none')).path);
      const gzip = readFileSync((await build('gzip')).path);
      assert.ok(none.includes(Buffer.from(TEXT)), 'file data stored uncompressed');
      assert.ok(!gzip.includes(Buffer.from(TEXT.slice(0, 4096))), 'gzip image compresses it');
      assert.ok(none.length > gzip.length);
    });

    it(
      'mounts to the same tree as the gzip image',
      needs('root', 'loop', 'mksquashfs', 'setfattr'),
      async () => {
        const none = await mountedListing((await build('none')).path, 'squashfs');
        const gzip = await mountedListing((await build('gzip')).path, 'squashfs');
        assert.deepEqual(none, gzip);
        assert.ok(none.some((x) => x.startsWith('/usr/share/doc/notes.txt ')));
        assert.ok(none.some((x) => x.startsWith('/etc/hostname ') && x.includes('user.origin=')));
      },
    );
  });
});
