import { afterEach, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import {
  chmod,
  chown,
  lchown,
  lstat,
  mkdir,
  readFile,
  readlink,
  readdir,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { isFerryError } from '@ferry/core';
import { needs, tempDir } from '@ferry/testing';
import { diffEtc, mergeEtc, type EtcMergeOptions } from './etc-merge.ts';

type Spec = Record<string, string | { link: string } | { dir: true } | null>;

/** Writes `spec` into `root`; null removes a path. */
async function build(root: string, spec: Spec) {
  for (const [p, v] of Object.entries(spec).sort()) {
    const full = join(root, p);
    if (v === null) {
      await rm(full, { recursive: true, force: true });
      continue;
    }
    await mkdir(dirname(full), { recursive: true });
    if (typeof v === 'string') await writeFile(full, v);
    else if ('link' in v) await symlink(v.link, full);
    else await mkdir(full, { recursive: true });
  }
}

const BASE: Spec = {
  hostname: 'debian\n',
  motd: 'hello\n',
  issue: 'Debian 12\n',
  'gone.conf': 'old\n',
  'conf.d/a.conf': 'a=1\n',
  passwd: 'root:x:0:0:root:/root:/bin/bash\n',
  group: 'root:x:0:\nadm:x:4:\n',
  shadow: 'root:*:19000:0:99999:7:::\n',
  gshadow: 'root:*::\nadm:*::\n',
};

let tmp: { dir: string; cleanup: () => Promise<void> };
let d: { old: string; live: string; neu: string; out: string; conflicts: string };

/** The three trees start as BASE plus the given changes. */
async function trees(old: Spec, live: Spec, neu: Spec) {
  await build(d.old, { ...BASE, ...old });
  await build(d.live, { ...BASE, ...old, ...live });
  await build(d.neu, { ...BASE, ...old, ...neu });
}

const merge = (extra: Partial<EtcMergeOptions> = {}) =>
  mergeEtc({
    oldDefaults: d.old,
    live: d.live,
    newDefaults: d.neu,
    out: d.out,
    conflictDir: d.conflicts,
    ...extra,
  });
const read = (p: string) => readFile(join(d.out, p), 'utf8');

beforeEach(async () => {
  tmp = await tempDir('ferry-etc-');
  d = {
    old: join(tmp.dir, 'old'),
    live: join(tmp.dir, 'live'),
    neu: join(tmp.dir, 'new'),
    out: join(tmp.dir, 'out'),
    conflicts: join(tmp.dir, 'conflicts'),
  };
});
afterEach(() => tmp.cleanup());

describe('mergeEtc', () => {
  describe('when a path is unmodified locally', () => {
    it('takes the new default, or drops the path the new default removed', async () => {
      await trees({}, {}, { issue: 'Debian 13\n', 'gone.conf': null });
      const r = await merge();
      assert.equal(await read('issue'), 'Debian 13\n');
      assert.equal(existsSync(join(d.out, 'gone.conf')), false);
      assert.deepEqual([r.updated, r.removed, r.conflicts.length], [1, 1, 0]);
    });
  });

  describe('when a path is modified locally', () => {
    it('keeps the live version when the new default did not change it', async () => {
      await trees({}, { motd: 'local\n' }, {});
      const r = await merge();
      assert.equal(await read('motd'), 'local\n');
      assert.deepEqual(r.conflicts, []);
    });

    it('keeps live, records both-changed and saves the new default in conflictDir', async () => {
      await trees({}, { motd: 'local\n' }, { motd: 'upstream\n' });
      const r = await merge();
      assert.equal(await read('motd'), 'local\n');
      assert.deepEqual(r.conflicts, [
        { path: 'motd', kind: 'both-changed', savedAs: 'files/motd' },
      ]);
      assert.equal(await readFile(join(d.conflicts, 'files/motd'), 'utf8'), 'upstream\n');
      const saved = JSON.parse(
        await readFile(join(d.conflicts, 'report.json'), 'utf8'),
      ) as typeof r;
      assert.deepEqual(saved.conflicts, r.conflicts);
      assert.equal(existsSync(join(d.out, 'motd.rpmnew')), false);
    });
  });

  describe('when a path was deleted locally', () => {
    it('stays deleted and records the upstream change', async () => {
      await trees({}, { motd: null }, { motd: 'upstream\n' });
      const r = await merge();
      assert.equal(existsSync(join(d.out, 'motd')), false);
      assert.deepEqual(
        r.conflicts.map((c) => [c.path, c.kind]),
        [['motd', 'deleted-locally-changed-upstream']],
      );
    });
  });

  describe('when a path is new', () => {
    it('brings a path new in the new defaults', async () => {
      await trees({}, {}, { 'conf.d/b.conf': 'b=1\n', 'ssh/sshd_config': 'Port 22\n' });
      const r = await merge();
      assert.equal(await read('conf.d/b.conf'), 'b=1\n');
      assert.equal(await read('ssh/sshd_config'), 'Port 22\n');
      assert.equal(r.added, 3);
    });

    it('keeps a path added locally, and live wins over a different new default (both-added)', async () => {
      await trees(
        {},
        { 'local.conf': 'mine\n', 'both.conf': 'mine\n' },
        { 'both.conf': 'theirs\n' },
      );
      const r = await merge();
      assert.equal(await read('local.conf'), 'mine\n');
      assert.equal(await read('both.conf'), 'mine\n');
      assert.deepEqual(
        r.conflicts.map((c) => [c.path, c.kind]),
        [['both.conf', 'both-added']],
      );
    });
  });

  describe('when the type of a path changes', () => {
    it('follows the new default for an unmodified path and keeps a local type change', async () => {
      await trees(
        { x: 'file\n' },
        { motd: { link: 'issue' } },
        { x: null, 'x/inner': 'dir now\n' },
      );
      await merge();
      assert.equal(await read('x/inner'), 'dir now\n');
      assert.equal(await readlink(join(d.out, 'motd')), 'issue');
    });

    it('keeps a directory the new defaults remove when it holds local additions', async () => {
      await trees({}, { 'conf.d/local.conf': 'mine\n' }, { 'conf.d': null, 'conf.d/a.conf': null });
      const r = await merge();
      assert.equal(await read('conf.d/local.conf'), 'mine\n');
      assert.equal(existsSync(join(d.out, 'conf.d/a.conf')), false);
      assert.ok(
        r.conflicts.some(
          (c) => c.path === 'conf.d' && c.kind === 'changed-locally-removed-upstream',
        ),
      );
    });
  });

  describe('when live holds hostile symlinks', () => {
    it('copies them verbatim and never reads or writes through them', async () => {
      const secret = join(tmp.dir, 'secret');
      await build(secret, { 'a.conf': 'secret\n' });
      // evil -> /root: the new default puts a file at evil/x.conf; a naive merge writes /root/x.conf.
      await trees(
        {},
        { evil: { link: '/root' }, 'conf.d': null, 'conf.d/a.conf': null },
        { 'evil/ferry-etc-merge-probe': 'x\n' },
      );
      await symlink(secret, join(d.live, 'conf.d'));
      const r = await merge();
      assert.equal(await readlink(join(d.out, 'evil')), '/root');
      assert.equal(await readlink(join(d.out, 'conf.d')), secret);
      assert.equal(existsSync('/root/ferry-etc-merge-probe'), false);
      assert.deepEqual(await readdir(secret), ['a.conf']);
      assert.ok(r.conflicts.some((c) => c.path === 'evil/ferry-etc-merge-probe'));
    });
  });

  describe('when entries have modes and owners', () => {
    it(
      'preserves mode, uid and gid of files, directories and symlinks',
      needs('root'),
      async () => {
        await trees({}, { 'private.conf': 'k\n', lnk: { link: 'nowhere' } }, {});
        await chown(join(d.live, 'private.conf'), 123, 456);
        // After chown, which clears setuid.
        await chmod(join(d.live, 'private.conf'), 0o4640);
        await chown(join(d.live, 'conf.d'), 7, 8);
        await chmod(join(d.live, 'conf.d'), 0o750);
        await lchown(join(d.live, 'lnk'), 9, 10);
        await merge();
        const f = await lstat(join(d.out, 'private.conf'));
        const dir = await lstat(join(d.out, 'conf.d'));
        const l = await lstat(join(d.out, 'lnk'));
        assert.deepEqual([f.mode & 0o7777, f.uid, f.gid], [0o4640, 123, 456]);
        assert.deepEqual([dir.mode & 0o7777, dir.uid, dir.gid], [0o750, 7, 8]);
        assert.deepEqual([l.uid, l.gid], [9, 10]);
      },
    );

    it('preserves extended attributes', needs('setfattr'), async () => {
      await trees({}, {}, {});
      spawnSync('setfattr', ['-n', 'user.ferry', '-v', 'kept', join(d.live, 'motd')]);
      const r = await merge();
      const got = spawnSync('getfattr', ['--only-values', '-n', 'user.ferry', join(d.out, 'motd')]);
      assert.equal(r.xattrs, true);
      assert.equal(got.stdout.toString(), 'kept');
    });
  });

  describe('when identity files are listed always-live or always-new', () => {
    it('keeps the live hostname even if unmodified, and forces an always-new path', async () => {
      await trees({}, { issue: 'mine\n' }, { hostname: 'image2\n', issue: 'theirs\n' });
      const r = await merge({ alwaysNew: ['issue'] });
      assert.equal(await read('hostname'), 'debian\n');
      assert.equal(await read('issue'), 'theirs\n');
      assert.deepEqual(
        r.conflicts.map((c) => c.kind),
        ['always-new-overrode-local'],
      );
    });
  });

  describe('when the user database changed on both sides', () => {
    it('merges passwd and group through mergeUsers', async () => {
      await trees(
        {},
        { passwd: `${BASE.passwd as string}alice:x:1000:1000::/home/alice:/bin/sh\n` },
        {
          passwd: `${BASE.passwd as string}_ssh:x:100:65534::/run/sshd:/usr/sbin/nologin\n`,
          group: 'root:x:0:\nadm:x:4:_ssh\n',
        },
      );
      await merge();
      assert.match(await read('passwd'), /^alice:.*\n_ssh:x:100:/m);
      assert.equal(await read('group'), 'root:x:0:\nadm:x:4:_ssh\n');
    });
  });

  describe('when the output or the input is not acceptable', () => {
    it('refuses an out directory that is not empty', async () => {
      await trees({}, {}, {});
      await build(d.out, { stale: 'x' });
      await assert.rejects(merge(), (e) => isFerryError(e, 'ETC_OUT_NOT_EMPTY'));
    });

    it('refuses a tree over the entry limit', async () => {
      await trees({}, {}, {});
      await assert.rejects(merge({ limits: { maxEntries: 5 } }), (e) =>
        isFerryError(e, 'ETC_TOO_LARGE'),
      );
    });

    it('refuses a live root that is a symlink', async () => {
      await trees({}, {}, {});
      await symlink(d.live, join(tmp.dir, 'live-link'));
      await assert.rejects(merge({ live: join(tmp.dir, 'live-link') }), (e) =>
        isFerryError(e, 'ETC_INPUT_INVALID'),
      );
    });
  });
});

describe('diffEtc', () => {
  describe('when live has local changes', () => {
    it('lists modified, added and deleted paths with a unified diff', async () => {
      await build(d.old, { ...BASE, 'sysctl.conf': 'a=1\nb=2\nc=3\n' });
      await build(d.live, {
        ...BASE,
        'sysctl.conf': 'a=1\nb=20\nc=3\n',
        'local.conf': 'x\n',
        motd: null,
      });
      const changes = await diffEtc({ defaults: d.old, live: d.live });
      assert.deepEqual(
        changes.map((c) => [c.path, c.kind]),
        [
          ['local.conf', 'added'],
          ['motd', 'deleted'],
          ['sysctl.conf', 'modified'],
        ],
      );
      assert.equal(
        changes[2]?.diff,
        '--- a/sysctl.conf\n+++ b/sysctl.conf\n@@ -1,3 +1,3 @@\n a=1\n-b=2\n+b=20\n c=3\n',
      );
      assert.equal(changes[0]?.diff, '--- /dev/null\n+++ b/local.conf\n@@ -0,0 +1 @@\n+x\n');
    });

    it('reports a binary file and a mode change without a text diff', async () => {
      await build(d.old, { ...BASE, 'bin.db': '\0\x01' });
      await build(d.live, { ...BASE, 'bin.db': '\0\x02' });
      await chmod(join(d.live, 'motd'), 0o600);
      const changes = await diffEtc({ defaults: d.old, live: d.live });
      assert.deepEqual(
        changes.map((c) => [c.path, c.details, c.diff]),
        [
          ['bin.db', ['binary/large file differs'], undefined],
          ['motd', ['mode 644 -> 600'], undefined],
        ],
      );
    });
  });
});

const BENCH = join(import.meta.dirname, '../../../.cache/bench-data');
const haveDebian =
  existsSync(join(BENCH, 'rootfs-v1/etc')) && existsSync(join(BENCH, 'rootfs-v2/etc'));

describe('mergeEtc on Debian minbase /etc', () => {
  describe('when v1 with local changes is merged to v2', () => {
    it(
      'brings the new packages and users and keeps the local changes',
      haveDebian ? {} : { skip: 'no Debian trees in .cache/bench-data (npm run bench:data)' },
      async () => {
        const v1 = join(BENCH, 'rootfs-v1/etc');
        const v2 = join(BENCH, 'rootfs-v2/etc');
        assert.equal(spawnSync('cp', ['-a', v1, d.live]).status, 0);
        await writeFile(join(d.live, 'hostname'), 'device-42\n');
        await rm(join(d.live, 'motd'));
        await writeFile(join(d.live, 'passwd'), 'alice:x:1000:1000::/home/alice:/bin/bash\n', {
          flag: 'a',
        });
        await writeFile(join(d.live, 'group'), 'alice:x:1000:\n', { flag: 'a' });
        const r = await mergeEtc({
          oldDefaults: v1,
          live: d.live,
          newDefaults: v2,
          out: d.out,
          conflictDir: d.conflicts,
        });
        assert.equal(await read('hostname'), 'device-42\n');
        assert.equal(existsSync(join(d.out, 'motd')), false);
        assert.match(await read('passwd'), /^alice:x:1000:/m);
        assert.match(await read('group'), /^alice:x:1000:\n_ssh:x:101:\n$/m);
        assert.equal(
          await readlink(join(d.out, 'alternatives/vi')),
          await readlink(join(v2, 'alternatives/vi')),
        );
        assert.ok((await lstat(join(d.out, 'X11'))).isDirectory());
        assert.deepEqual(r.conflicts, []);
        assert.ok(r.added > 20);
      },
    );
  });
});
