import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isFerryError } from '@ferry/core';
import { makeTar } from './fixtures/tar-writer.ts';
import { parsePax, readTar, type TarEntry } from './tar-reader.ts';

async function entries(tar: Buffer): Promise<(TarEntry & { data: string })[]> {
  const out: (TarEntry & { data: string })[] = [];
  for await (const { entry, body } of readTar([tar])) {
    const parts: Buffer[] = [];
    for await (const p of body) parts.push(p);
    out.push({ ...entry, data: Buffer.concat(parts).toString() });
  }
  return out;
}

function chunked(buf: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) out.push(buf.subarray(i, i + size));
  return out;
}

describe('readTar', () => {
  describe('when reading ustar and PAX members', () => {
    it('yields names, types, owners, modes, data and xattrs', async () => {
      const long = `dir/${'x'.repeat(150)}`;
      const tar = makeTar([
        { name: 'a/', type: 'dir', mode: 0o1777 },
        { name: 'a/f', data: 'hello', mode: 0o4755, uid: 7, gid: 8 },
        { name: long, data: 'long', xattrs: { 'user.k': 'v' } },
        { name: 'l', type: 'symlink', linkname: '/etc/passwd' },
        { name: 'n', type: 'char', devmajor: 1, devminor: 3 },
      ]);
      const got = await entries(tar);
      assert.deepEqual(
        got.map((e) => [e.path, e.type, e.mode, e.uid, e.gid, e.data]),
        [
          ['a/', 'dir', 0o1777, 0, 0, ''],
          ['a/f', 'file', 0o4755, 7, 8, 'hello'],
          [long, 'file', 0o644, 0, 0, 'long'],
          ['l', 'symlink', 0o644, 0, 0, ''],
          ['n', 'char', 0o644, 0, 0, ''],
        ],
      );
      assert.equal(got[2]!.xattrs.get('user.k')?.toString(), 'v');
      assert.equal(got[3]!.linkpath, '/etc/passwd');
      assert.deepEqual([got[4]!.devmajor, got[4]!.devminor], [1, 3]);
    });
    it('gives the same entries whatever the chunking', async () => {
      const tar = makeTar([
        { name: 'f', data: 'x'.repeat(3000) },
        { name: 'g', data: 'y' },
      ]);
      const whole = await entries(tar);
      const pieces: TarEntry[] = [];
      for await (const { entry } of readTar(chunked(tar, 7))) pieces.push(entry);
      assert.deepEqual(
        pieces.map((e) => e.path),
        whole.map((e) => e.path),
      );
      assert.equal(whole[0]!.data.length, 3000);
    });
  });
  describe('when reading a GNU tar archive', () => {
    it('reads GNU long names and SCHILY xattrs', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'ferry-gnutar-'));
      try {
        const deep = join(dir, 'src', 'p'.repeat(90), 'q'.repeat(90));
        mkdirSync(deep, { recursive: true });
        writeFileSync(join(deep, 'file'), 'gnu');
        const r = spawnSync('tar', ['--format=gnu', '-C', join(dir, 'src'), '-cf', '-', '.']);
        assert.equal(r.status, 0);
        const got = await entries(r.stdout);
        const f = got.find((e) => e.path.endsWith('/file'));
        assert.equal(f?.path, `./${'p'.repeat(90)}/${'q'.repeat(90)}/file`);
        assert.equal(f?.data, 'gnu');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
  describe('when a header checksum is wrong', () => {
    it('throws IMAGE_INPUT_INVALID', async () => {
      const tar = makeTar([{ name: 'f', data: 'x' }]);
      tar.writeUInt8(tar.readUInt8(10) ^ 0xff, 10);
      await assert.rejects(entries(tar), (e) => isFerryError(e, 'IMAGE_INPUT_INVALID'));
    });
  });
  describe('when the archive is truncated inside a member', () => {
    it('throws IMAGE_INPUT_INVALID', async () => {
      const tar = makeTar([{ name: 'f', data: 'x'.repeat(2000) }]).subarray(0, 1024);
      await assert.rejects(entries(tar), (e) => isFerryError(e, 'IMAGE_INPUT_INVALID'));
    });
  });
  describe('when a PAX header claims more than the metadata limit', () => {
    it('throws IMAGE_INPUT_INVALID without reading it', async () => {
      const tar = makeTar([{ name: 'f', data: 'x' }]);
      const h = tar.subarray(0, 512);
      h.write('x', 156, 'latin1');
      h.write('77777777777\0', 124, 'latin1');
      h.fill(0x20, 148, 156);
      let sum = 0;
      for (const b of h) sum += b;
      h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
      await assert.rejects(entries(tar), (e) => isFerryError(e, 'IMAGE_INPUT_INVALID'));
    });
  });
  describe('when a member is a GNU sparse file', () => {
    it('throws IMAGE_INPUT_INVALID', async () => {
      const tar = makeTar([{ name: 'f', data: 'x' }]);
      tar.write('S', 156, 'latin1');
      tar.fill(0x20, 148, 156);
      let sum = 0;
      for (const b of tar.subarray(0, 512)) sum += b;
      tar.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
      await assert.rejects(entries(tar), (e) => isFerryError(e, 'IMAGE_INPUT_INVALID'));
    });
  });
});

describe('parsePax', () => {
  describe('when a record length is inconsistent', () => {
    it('throws IMAGE_INPUT_INVALID', () => {
      assert.throws(
        () => parsePax(Buffer.from('99 path=x\n')),
        (e) => isFerryError(e, 'IMAGE_INPUT_INVALID'),
      );
    });
  });
  describe('when records are well formed', () => {
    it('returns every key', () => {
      const m = parsePax(Buffer.from('11 path=ab\n16 linkpath=/cd\n'));
      assert.equal(m.get('path')?.toString(), 'ab');
      assert.equal(m.get('linkpath')?.toString(), '/cd');
    });
  });
});
