import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmod, link, mkdir, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { needs, tempDir } from '@ferry/testing';
import {
  ObjectHasher,
  encodeTree,
  objectIdOf,
  parseTree,
  scanTree,
  treeDigest,
  type TreeEntry,
  type TreeListing,
} from './tree.ts';

const OBJ = 'a'.repeat(64);
const uid = process.getuid?.() ?? 0;
const gid = process.getgid?.() ?? 0;
const dir = (path: string, mode = 0o755): TreeEntry => ({ path, type: 'dir', mode, uid, gid });
const file = (path: string, extra: Partial<TreeEntry> = {}): TreeEntry => ({
  path,
  type: 'file',
  mode: 0o644,
  uid,
  gid,
  size: 3,
  object: OBJ,
  ...extra,
});
const sample = (): TreeListing => ({
  entries: [
    dir(''),
    dir('etc'),
    file('etc/passwd', { xattrs: { 'user.a': 'AQI=' } }),
    { path: 'lib', type: 'symlink', mode: 0o777, uid, gid, target: 'usr/lib' },
    { path: 'null', type: 'char', mode: 0o666, uid, gid, major: 1, minor: 3 },
    { path: 'pipe', type: 'fifo', mode: 0o600, uid, gid },
    dir('usr'),
    file('usr/bin-su', { mode: 0o4755 }),
  ],
});

/** Listing bytes from raw lines (header first), bypassing the encoder's checks. */
const raw = (lines: string[]): Buffer => Buffer.from(lines.map((l) => l + '\n').join(''));
const head = (n: number): string => `{"entries":${n},"format":"ferry-tree","version":1}`;
const root = `{"gid":0,"mode":493,"path":"","type":"dir","uid":0}`;
const d = (p: string): string =>
  `{"gid":0,"mode":493,"path":${JSON.stringify(p)},"type":"dir","uid":0}`;
const f = (p: string): string =>
  `{"gid":0,"mode":420,"object":"${OBJ}","path":${JSON.stringify(p)},"size":1,"type":"file","uid":0}`;
const withRoot = (...lines: string[]): Buffer => raw([head(lines.length + 1), root, ...lines]);

describe('tree listing', () => {
  describe('when a listing is encoded and parsed', () => {
    it('round-trips to the same entries and the same bytes', () => {
      const bytes = encodeTree(sample());
      const back = parseTree(bytes);
      assert.deepEqual(back, sample());
      assert.ok(encodeTree(back).equals(bytes));
      assert.match(treeDigest(bytes), /^[0-9a-f]{64}$/);
    });
    it('changes the digest when one mode bit changes', () => {
      const s = sample();
      s.entries[1]!.mode = 0o750;
      assert.notEqual(treeDigest(encodeTree(s)), treeDigest(encodeTree(sample())));
    });
    it('orders paths by UTF-8 bytes, not UTF-16 units', () => {
      // U+FF61 is EF BD A1 in UTF-8 and sorts before U+1F600 (F0 ...), unlike in UTF-16.
      const ok = { entries: [dir(''), dir('\uff61'), dir('\u{1f600}')] };
      assert.equal(parseTree(encodeTree(ok)).entries.length, 3);
      const bad = { entries: [dir(''), dir('\u{1f600}'), dir('\uff61')] };
      assert.throws(() => encodeTree(bad), { code: 'TREE_INVALID' });
    });
  });

  describe('when the bytes are not the canonical encoding', () => {
    const cases: [string, Buffer][] = [
      ['a space after a colon', raw([head(1), root.replace('"gid":', '"gid": ')])],
      ['keys out of order', raw([head(1), `{"mode":493,"gid":0,"path":"","type":"dir","uid":0}`])],
      ['a non-canonical header', raw([`{"format":"ferry-tree","entries":1,"version":1}`, root])],
      ['an escaped ASCII letter', raw([head(2), root, d('\\u0061').replace('\\\\', '\\')])],
    ];
    for (const [what, bytes] of cases)
      it(`refuses ${what} with TREE_NOT_CANONICAL`, () => {
        assert.throws(() => parseTree(bytes), { code: 'TREE_NOT_CANONICAL' });
      });
  });

  describe('when the bytes break a rule', () => {
    const long = 'x'.repeat(200);
    const cases: [string, Buffer][] = [
      ['no final newline', withRoot(d('a')).subarray(0, -1)],
      ['an empty listing', Buffer.alloc(0)],
      ['another format', raw([head(1).replace('ferry-tree', 'other'), root])],
      ['another version', raw([head(1).replace('"version":1', '"version":2'), root])],
      ['no root entry', raw([head(1), d('a')])],
      ['a root that is a file', raw([head(1), f('')])],
      ['zero entries', raw([head(0)])],
      ['more entries than declared', raw([head(1), root, d('a')])],
      ['fewer entries than declared', raw([head(3), root, d('a')])],
      ['a .. component', withRoot(d('a'), d('a/..'))],
      ['a . component', withRoot(d('a'), d('a/.'))],
      ['a leading slash', withRoot(d('/a'))],
      ['a trailing slash', withRoot(d('a'), d('a/'))],
      ['an empty component', withRoot(d('a'), d('a//b'))],
      ['a NUL in a path', withRoot(d('a\u0000b'))],
      ['a path over 4096 bytes', withRoot(d(Array.from({ length: 21 }, () => long).join('/')))],
      ['a name over 255 bytes', withRoot(d('y'.repeat(256)))],
      ['a duplicate path', withRoot(d('a'), d('a'))],
      ['unsorted paths', withRoot(d('b'), d('a'))],
      ['a missing parent', withRoot(d('a/b'))],
      ['a parent that is a file', withRoot(f('a'), f('a/b'))],
      ['an unknown key', withRoot(d('a').replace('"gid"', '"extra":1,"gid"'))],
      ['a missing key', withRoot(f('a').replace('"size":1,', ''))],
      ['a file with a target', withRoot(f('a').replace('"type"', '"target":"x","type"'))],
      ['an unknown type', withRoot(d('a').replace('"dir"', '"socket"'))],
      ['a mode over 12 bits', withRoot(d('a').replace('493', '4096'))],
      ['a negative uid', withRoot(d('a').replace('"uid":0', '"uid":-1'))],
      ['a fractional size', withRoot(f('a').replace('"size":1', '"size":1.5'))],
      ['an uppercase object id', withRoot(f('a').replace(OBJ, 'A'.repeat(64)))],
      [
        'a symlink mode other than 0777',
        withRoot(`{"gid":0,"mode":493,"path":"l","target":"x","type":"symlink","uid":0}`),
      ],
      [
        'an empty symlink target',
        withRoot(`{"gid":0,"mode":511,"path":"l","target":"","type":"symlink","uid":0}`),
      ],
      [
        'a major over 12 bits',
        withRoot(`{"gid":0,"major":4096,"minor":0,"mode":420,"path":"c","type":"char","uid":0}`),
      ],
      ['an empty xattrs map', withRoot(d('a').replace('"uid":0', '"uid":0,"xattrs":{}'))],
      [
        'an xattr outside the namespaces',
        withRoot(d('a').replace('"uid":0', '"uid":0,"xattrs":{"foo":"AA=="}')),
      ],
      [
        'non-canonical base64',
        withRoot(d('a').replace('"uid":0', '"uid":0,"xattrs":{"user.a":"AB=="}')),
      ],
      ['JSON that is not an object', raw([head(2), root, '[1]'])],
      ['malformed JSON', raw([head(2), root, '{"gid":'])],
    ];
    for (const [what, bytes] of cases)
      it(`refuses ${what} with TREE_INVALID`, () => {
        assert.throws(() => parseTree(bytes), { code: 'TREE_INVALID' });
      });
  });

  describe('when the listing is over a limit', () => {
    it('refuses more bytes than maxBytes with TREE_TOO_LARGE', () => {
      const bytes = withRoot(d('a'));
      assert.throws(() => parseTree(bytes, { maxBytes: bytes.length - 1, maxEntries: 10 }), {
        code: 'TREE_TOO_LARGE',
      });
    });
    it('refuses a header declaring more than maxEntries before reading them', () => {
      assert.throws(() => parseTree(raw([head(11), root]), { maxBytes: 1 << 20, maxEntries: 10 }), {
        code: 'TREE_TOO_LARGE',
      });
    });
    it('refuses a line over 256 KiB with TREE_TOO_LARGE', () => {
      assert.throws(() => parseTree(withRoot(d('a') + ' '.repeat(256 * 1024))), {
        code: 'TREE_TOO_LARGE',
      });
    });
  });
});

describe('object id', () => {
  const meta = { mode: 0o644, uid: 0, gid: 0 };
  const content = Buffer.from('hello');
  const id = objectIdOf(meta, content);
  it('is the same for the same content and metadata, and streams', () => {
    const h = new ObjectHasher({ ...meta, size: 5 });
    h.update(content.subarray(0, 2));
    h.update(content.subarray(2));
    assert.equal(h.objectId(), id);
    assert.equal(h.bytes, 5);
  });
  for (const [what, other] of [
    ['mode', { ...meta, mode: 0o4755 }],
    ['uid', { ...meta, uid: 1 }],
    ['gid', { ...meta, gid: 1 }],
    ['xattrs', { ...meta, xattrs: { 'user.a': 'AA==' } }],
  ] as const)
    it(`changes with the ${what}`, () => assert.notEqual(objectIdOf(other, content), id));
  it('changes with the content, and keeps a plain content SHA-256', () => {
    assert.notEqual(objectIdOf(meta, Buffer.from('hellp')), id);
    const h = new ObjectHasher({ ...meta, size: 5 });
    h.update(content);
    assert.equal(
      h.contentSha256(),
      '2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824',
    );
  });
  it('does not depend on the order xattrs are given in', () => {
    const a = { ...meta, xattrs: { 'user.a': 'AA==', 'user.b': 'AQ==' } };
    const b = { ...meta, xattrs: { 'user.b': 'AQ==', 'user.a': 'AA==' } };
    assert.equal(objectIdOf(a, content), objectIdOf(b, content));
  });
});

describe('scanTree', () => {
  let t: { dir: string; cleanup: () => Promise<void> };
  before(async () => {
    t = await tempDir();
  });
  after(() => t.cleanup());
  const fresh = async (name: string): Promise<string> => {
    const p = join(t.dir, name);
    await mkdir(p);
    return p;
  };

  describe('when the tree is hostile', () => {
    it('records symlinks to outside as symlinks and reads nothing behind them', async () => {
      const r = await fresh('hostile');
      await symlink('/etc', join(r, 'etc'));
      await symlink('/etc/passwd', join(r, 'passwd'));
      await symlink('../../../../..', join(r, 'up'));
      execFileSync('mkfifo', [join(r, 'fifo')]);
      const l = await scanTree(r, { xattrs: false });
      assert.deepEqual(
        l.entries.map((e) => [e.path, e.type, e.target]),
        [
          ['', 'dir', undefined],
          ['etc', 'symlink', '/etc'],
          ['fifo', 'fifo', undefined],
          ['passwd', 'symlink', '/etc/passwd'],
          ['up', 'symlink', '../../../../..'],
        ],
      );
    });
    it('refuses a root that is a symlink', async () => {
      await symlink('/etc', join(t.dir, 'rootlink'));
      await assert.rejects(scanTree(join(t.dir, 'rootlink'), { xattrs: false }), {
        code: 'TREE_INVALID',
      });
    });
    it('refuses a socket with TREE_INVALID', async () => {
      const r = await fresh('sock');
      const srv = createServer();
      await new Promise<void>((res) => srv.listen(join(r, 's'), res));
      try {
        await assert.rejects(scanTree(r, { xattrs: false }), { code: 'TREE_INVALID' });
      } finally {
        srv.close();
      }
    });
    it('refuses a name that is not UTF-8 with TREE_INVALID', async () => {
      const r = await fresh('latin1');
      await writeFile(Buffer.concat([Buffer.from(join(r, '/')), Buffer.from([0xff, 0x41])]), 'x');
      await assert.rejects(scanTree(r, { xattrs: false }), { code: 'TREE_INVALID' });
    });
    it('stops with TREE_TOO_LARGE past maxEntries', async () => {
      const r = await fresh('many');
      for (let i = 0; i < 5; i++) await writeFile(join(r, `f${i}`), '');
      await assert.rejects(
        scanTree(r, { xattrs: false, limits: { maxBytes: 1 << 20, maxEntries: 5 } }),
        {
          code: 'TREE_TOO_LARGE',
        },
      );
    });
  });

  describe('when the tree has hardlinks, special modes and xattrs', () => {
    it('gives hardlinks the same object and records setuid bits', async () => {
      const r = await fresh('links');
      await writeFile(join(r, 'a'), 'same bytes');
      await link(join(r, 'a'), join(r, 'b'));
      await writeFile(join(r, 'c'), 'same bytes');
      await chmod(join(r, 'c'), 0o4755);
      const l = await scanTree(r, { xattrs: false });
      const [a, b, c] = l.entries.slice(1);
      assert.equal(a!.object, b!.object);
      assert.equal(a!.size, 10);
      assert.equal(c!.mode, 0o4755);
      assert.notEqual(c!.object, a!.object);
      assert.equal(a!.object, objectIdOf(a!, Buffer.from('same bytes')));
    });
    it('reads xattrs, also under names that need quoting', needs('setfattr'), async () => {
      const r = await fresh('xattrs');
      const odd = join(r, 'new\nline \\ name');
      await writeFile(odd, 'x');
      await writeFile(join(r, 'plain'), 'x');
      execFileSync('setfattr', ['-n', 'user.ferry', '-v', '0x0102ff', odd]);
      execFileSync('setfattr', ['-n', 'user.empty', odd]);
      const l = await scanTree(r);
      const e = l.entries.find((x) => x.path === 'new\nline \\ name')!;
      assert.deepEqual(e.xattrs, { 'user.empty': '', 'user.ferry': 'AQL/' });
      const plain = l.entries.find((x) => x.path === 'plain')!;
      assert.equal(plain.xattrs, undefined);
      assert.notEqual(e.object, plain.object);
      assert.ok(parseTree(encodeTree(l)).entries.length === 3);
    });
  });
});
