import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { readdir, lstat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isFerryError } from '@ferry/core';
import { needs } from '@ferry/testing';
import { LAYER1, LAYER2, LAYER3, MERGED } from './fixtures/oci-fixture.ts';
import { makeTar, type TarSpec } from './fixtures/tar-writer.ts';
import { applyLayer, classifyEntry } from './layers.ts';
import { StagingTree } from './tar-extract.ts';
import { readTar } from './tar-reader.ts';

/** The tree as path -> content ('' for directories, which end in /). */
async function snapshot(root: string, rel = ''): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of (await readdir(join(root, rel))).sort()) {
    const p = rel ? `${rel}/${name}` : name;
    if ((await lstat(join(root, p))).isDirectory()) {
      out[`${p}/`] = '';
      Object.assign(out, await snapshot(root, p));
    } else out[p] = readFileSync(join(root, p), 'utf8');
  }
  return out;
}

describe('classifyEntry', () => {
  describe('when the name is a whiteout', () => {
    it('names the directory and the hidden entry', () => {
      assert.deepEqual(classifyEntry('./a/b/.wh.c'), {
        kind: 'whiteout',
        dir: ['a', 'b'],
        name: 'c',
      });
    });
  });
  describe('when the name is an opaque marker', () => {
    it('names the directory', () => {
      assert.deepEqual(classifyEntry('a/.wh..wh..opq'), { kind: 'opaque', dir: ['a'] });
    });
  });
  describe('when the name is aufs bookkeeping', () => {
    it('is ignored', () => {
      assert.deepEqual(classifyEntry('.wh..wh.plnk/1.2'), { kind: 'ignore' });
      assert.deepEqual(classifyEntry('.wh..wh.plnk'), { kind: 'ignore' });
    });
  });
  describe('when a whiteout names . or ..', () => {
    it('throws IMAGE_PATH_TRAVERSAL', () => {
      for (const n of ['a/.wh...', 'a/.wh..', '.wh.'])
        assert.throws(
          () => classifyEntry(n),
          (e) => isFerryError(e, 'IMAGE_PATH_TRAVERSAL'),
        );
    });
  });
});

describe('applyLayer', () => {
  let base = '';
  let tree: StagingTree;
  beforeEach(() => {
    base = mkdtempSync(join(tmpdir(), 'ferry-layers-'));
    tree = new StagingTree(join(base, 'stage'));
    tree.init();
  });
  afterEach(() => rmSync(base, { recursive: true, force: true }));
  const apply = (specs: TarSpec[]) => applyLayer(tree, readTar([makeTar(specs)]));

  describe('when three layers with whiteouts, an opaque dir and type changes are applied', () => {
    it('gives the merged tree without whiteout files', needs('root'), async () => {
      for (const l of [LAYER1, LAYER2, LAYER3]) await apply(l);
      assert.deepEqual(await snapshot(tree.root), MERGED);
      assert.equal((await lstat(join(tree.root, 'opq'))).mode & 0o777, 0o750);
    });
  });
  describe('when a whiteout and a new entry of the same name are in one layer', () => {
    it('hides only the lower one', needs('root'), async () => {
      await apply([
        { name: 'x/', type: 'dir' },
        { name: 'x/old', data: 'old' },
      ]);
      await apply([{ name: 'x/', type: 'dir' }, { name: 'x/new', data: 'new' }, { name: '.wh.x' }]);
      assert.deepEqual(await snapshot(tree.root), { 'x/': '', 'x/new': 'new' });
    });
  });
  describe('when an opaque marker is at the root', () => {
    it('removes every lower entry but keeps the root', needs('root'), async () => {
      await apply([
        { name: 'a', data: 'a' },
        { name: 'd/', type: 'dir' },
      ]);
      await apply([{ name: '.wh..wh..opq' }, { name: 'b', data: 'b' }]);
      assert.deepEqual(await snapshot(tree.root), { b: 'b' });
    });
  });
  describe('when a whiteout names a symlink to a directory', () => {
    it('removes the symlink, not the target', needs('root'), async () => {
      await apply([
        { name: 'keep/', type: 'dir' },
        { name: 'keep/f', data: 'f' },
        { name: 'l', type: 'symlink', linkname: 'keep' },
      ]);
      await apply([{ name: '.wh.l' }]);
      assert.deepEqual(await snapshot(tree.root), { 'keep/': '', 'keep/f': 'f' });
    });
  });
});
