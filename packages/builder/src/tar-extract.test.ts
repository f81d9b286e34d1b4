import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readlinkSync,
  lstatSync,
  rmSync,
  statSync,
  writeFileSync,
  existsSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isFerryError } from '@ferry/core';
import { needs } from '@ferry/testing';
import { SAMPLE_ROOTFS } from './fixtures/sample-rootfs.ts';
import { makeTar, type TarSpec } from './fixtures/tar-writer.ts';
import { applyLayer } from './layers.ts';
import { runTool } from './spawn.ts';
import { DEFAULT_EXTRACT_LIMITS, normalizeEntryPath, StagingTree } from './tar-extract.ts';
import { readTar } from './tar-reader.ts';

describe('normalizeEntryPath', () => {
  describe('when the name is harmless', () => {
    it('drops ./, empty and . components', () => {
      assert.deepEqual(normalizeEntryPath('./a//./b/'), ['a', 'b']);
      assert.deepEqual(normalizeEntryPath('./'), []);
    });
  });
  describe('when the name escapes the root', () => {
    for (const name of ['../escape', '/abs/path', 'a/../../b', 'a/..', 'a\0b'])
      it(`refuses ${JSON.stringify(name)} with IMAGE_PATH_TRAVERSAL`, () => {
        assert.throws(
          () => normalizeEntryPath(name),
          (e) => isFerryError(e, 'IMAGE_PATH_TRAVERSAL'),
        );
      });
  });
  describe('when a component is longer than 255 bytes', () => {
    it('refuses it with IMAGE_INPUT_INVALID', () => {
      assert.throws(
        () => normalizeEntryPath(`a/${'x'.repeat(256)}`),
        (e) => isFerryError(e, 'IMAGE_INPUT_INVALID'),
      );
    });
  });
});

describe('StagingTree', () => {
  let base = '';
  let sentinel = '';
  let victim = '';
  let tree: StagingTree;
  beforeEach(() => {
    base = mkdtempSync(join(tmpdir(), 'ferry-extract-'));
    sentinel = join(base, 'sentinel');
    victim = join(base, 'victim');
    mkdirSync(sentinel);
    mkdirSync(victim);
    writeFileSync(join(victim, 'keep'), 'keep');
    mkdirSync(join(base, 'work'));
    tree = new StagingTree(join(base, 'work', 'stage'));
    tree.init();
  });
  afterEach(() => rmSync(base, { recursive: true, force: true }));

  const extract = (specs: TarSpec[]) => applyLayer(tree, readTar([makeTar(specs)]));

  describe('when an archive is hostile', () => {
    const cases: [string, () => TarSpec[]][] = [
      ['../escape', () => [{ name: '../../sentinel/escape', data: 'x' }]],
      ['/abs/path', () => [{ name: `${sentinel}/pwned`, data: 'x' }]],
      ['a/../../b', () => [{ name: 'a/../../b', data: 'x' }]],
      [
        'a file through an absolute symlink',
        () => [
          { name: 'link', type: 'symlink', linkname: sentinel },
          { name: 'link/pwned', data: 'x' },
        ],
      ],
      [
        'a file through a ../.. symlink chain',
        () => [
          { name: 'd1/', type: 'dir' },
          { name: 'd1/up', type: 'symlink', linkname: '../..' },
          { name: 'd1/up/sentinel/pwned', data: 'x' },
        ],
      ],
      [
        'a file through a symlink to a .. chain',
        () => [
          { name: 'dot', type: 'symlink', linkname: '.' },
          { name: 'up', type: 'symlink', linkname: 'dot/../dot/../..' },
          { name: 'up/sentinel/pwned', data: 'x' },
        ],
      ],
      [
        'a directory through a relative symlink',
        () => [
          { name: 'up', type: 'symlink', linkname: '../../sentinel' },
          { name: 'up/newdir/', type: 'dir' },
        ],
      ],
      [
        'a hardlink to /etc/passwd',
        () => [{ name: 'h', type: 'hardlink', linkname: '/etc/passwd' }],
      ],
      [
        'a hardlink to ../x',
        () => [{ name: 'h', type: 'hardlink', linkname: '../../victim/keep' }],
      ],
      [
        'a hardlink through a symlink',
        () => [
          { name: 'etc', type: 'symlink', linkname: '/etc' },
          { name: 'h', type: 'hardlink', linkname: 'etc/passwd' },
        ],
      ],
      ['a whiteout naming ../x', () => [{ name: '../.wh.victim' }]],
      ['a whiteout naming ..', () => [{ name: 'sub/', type: 'dir' }, { name: 'sub/.wh...' }]],
      [
        'a whiteout through a symlink',
        () => [{ name: 'v', type: 'symlink', linkname: victim }, { name: 'v/.wh.keep' }],
      ],
      [
        'an opaque marker through a symlink',
        () => [{ name: 'v', type: 'symlink', linkname: victim }, { name: 'v/.wh..wh..opq' }],
      ],
    ];
    for (const [what, specs] of cases)
      it(
        `refuses ${what} with IMAGE_PATH_TRAVERSAL and writes nothing outside`,
        needs('root'),
        async () => {
          const passwdLinks = statSync('/etc/passwd').nlink;
          await assert.rejects(extract(specs()), (e) => isFerryError(e, 'IMAGE_PATH_TRAVERSAL'));
          assert.deepEqual(readdirSync(sentinel), []);
          assert.deepEqual(readdirSync(victim), ['keep']);
          assert.deepEqual(readdirSync(join(base, 'work')), ['stage']);
          assert.equal(statSync('/etc/passwd').nlink, passwdLinks);
        },
      );
  });

  describe('when a directory entry replaces a symlink', () => {
    it('replaces the symlink instead of following it', needs('root'), async () => {
      await extract([
        { name: 's', type: 'symlink', linkname: sentinel },
        { name: 's/', type: 'dir' },
        { name: 's/f', data: 'inside' },
      ]);
      assert.deepEqual(readdirSync(sentinel), []);
      assert.ok(lstatSync(join(tree.root, 's')).isDirectory());
    });
  });

  describe('when a file entry replaces an existing file or symlink', () => {
    it('unlinks it first and writes a new file', needs('root'), async () => {
      await extract([
        { name: 'f', type: 'symlink', linkname: join(victim, 'keep') },
        { name: 'f', data: 'new' },
      ]);
      assert.equal(statSync(join(victim, 'keep')).size, 4);
      assert.ok(lstatSync(join(tree.root, 'f')).isFile());
    });
  });

  describe('when a hardlink names a missing file', () => {
    it('refuses it with IMAGE_INPUT_INVALID', needs('root'), async () => {
      await assert.rejects(extract([{ name: 'h', type: 'hardlink', linkname: 'nothing' }]), (e) =>
        isFerryError(e, 'IMAGE_INPUT_INVALID'),
      );
    });
  });

  describe('when the archive has more entries than the limit', () => {
    it('stops with IMAGE_INPUT_INVALID', needs('root'), async () => {
      const small = new StagingTree(join(base, 'work', 'small'), {
        ...DEFAULT_EXTRACT_LIMITS,
        maxEntries: 2,
      });
      small.init();
      const specs = [
        { name: 'a', data: '1' },
        { name: 'b', data: '2' },
        { name: 'c', data: '3' },
      ];
      await assert.rejects(applyLayer(small, readTar([makeTar(specs)])), (e) =>
        isFerryError(e, 'IMAGE_INPUT_INVALID'),
      );
    });
  });

  describe('when extracting a full sample rootfs', () => {
    it(
      'keeps owners, modes, links, nodes and xattrs',
      needs('root', 'mknod', 'setfattr'),
      async () => {
        await extract(SAMPLE_ROOTFS);
        const p = (rel: string) => join(tree.root, rel);
        assert.equal(lstatSync(p('usr/bin/su')).mode & 0o7777, 0o4755);
        assert.equal(lstatSync(p('usr/bin/su')).ino, lstatSync(p('usr/bin/su-hardlink')).ino);
        assert.equal(lstatSync(p('tmp')).mode & 0o7777, 0o1777);
        assert.deepEqual(
          [lstatSync(p('home/user')).uid, lstatSync(p('etc/shadow')).gid],
          [1000, 42],
        );
        assert.equal(readlinkSync(p('etc/passwd-link')), '/etc/passwd');
        assert.ok(lstatSync(p('dev/null')).isCharacterDevice());
        assert.equal(lstatSync(p('dev/null')).rdev, (1 << 8) | 3);
        assert.ok(lstatSync(p('dev/initctl')).isFIFO());
        const { stdout } = await runTool('getfattr', [
          '-h',
          '-d',
          '-m',
          '-',
          '-e',
          'hex',
          p('usr/bin/ping'),
        ]);
        assert.match(stdout, /security\.capability=0x0100000200200000/);
        assert.ok(!existsSync('/etc/passwd-link'));
      },
    );
  });
});
