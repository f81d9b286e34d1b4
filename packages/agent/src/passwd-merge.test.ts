import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isFerryError } from '@ferry/core';
import { mergeUsers, parseUserDb, USER_DB_MAX_BYTES, type UserDb } from './passwd-merge.ts';

const lines = (...l: string[]) => `${l.join('\n')}\n`;

const OLD: UserDb = {
  passwd: lines(
    'root:x:0:0:root:/root:/bin/bash',
    'daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin',
    'games:x:5:60:games:/usr/games:/usr/sbin/nologin',
  ),
  group: lines('root:x:0:', 'daemon:x:1:', 'adm:x:4:', 'games:x:60:', 'users:x:100:'),
  shadow: lines(
    'root:*:19000:0:99999:7:::',
    'daemon:*:19000:0:99999:7:::',
    'games:*:19000:0:99999:7:::',
  ),
  gshadow: lines('root:*::', 'daemon:*::', 'adm:*::', 'games:*::', 'users:*::'),
};

// The new image adds systemd-timesync (uid 998, group 998) and puts it into adm.
const NEW: UserDb = {
  passwd: OLD.passwd + 'systemd-timesync:x:998:998:Time Sync:/:/usr/sbin/nologin\n',
  group: lines(
    'root:x:0:',
    'daemon:x:1:',
    'adm:x:4:systemd-timesync',
    'games:x:60:',
    'users:x:100:',
    'systemd-timesync:x:998:',
  ),
  shadow: OLD.shadow + 'systemd-timesync:!*:19500::::::\n',
  gshadow: lines(
    'root:*::',
    'daemon:*::',
    'adm:*::systemd-timesync',
    'games:*::',
    'users:*::',
    'systemd-timesync:!*::',
  ),
};

// The owner changed root's shell and password, added alice (uid 1000) and put her into adm.
const LIVE: UserDb = {
  passwd: lines(
    'root:x:0:0:root:/root:/bin/zsh',
    'daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin',
    'games:x:5:60:games:/usr/games:/usr/sbin/nologin',
    'alice:x:1000:1000:Alice:/home/alice:/bin/bash',
  ),
  group: lines(
    'root:x:0:',
    'daemon:x:1:',
    'adm:x:4:alice',
    'games:x:60:',
    'users:x:100:',
    'alice:x:1000:',
  ),
  shadow: lines(
    'root:$y$j9T$secret$hash:19600:0:99999:7:::',
    'daemon:*:19000:0:99999:7:::',
    'games:*:19000:0:99999:7:::',
    'alice:$6$salt$alicehash:19600:0:99999:7:::',
  ),
  gshadow: lines('root:*::', 'daemon:*::', 'adm:*::alice', 'games:*::', 'users:*::', 'alice:!::'),
};

const merge = (live: UserDb = LIVE, newDefaults: UserDb = NEW) =>
  mergeUsers({ oldDefaults: OLD, live, newDefaults });

const recordOf = (text: string | undefined, name: string) =>
  text?.split('\n').find((l) => l.startsWith(`${name}:`));

describe('mergeUsers', () => {
  describe('when the new image adds a system user', () => {
    it('appends the user, its group, shadow and gshadow lines after the live records', () => {
      const r = merge();
      assert.equal(
        r.files.passwd,
        LIVE.passwd + 'systemd-timesync:x:998:998:Time Sync:/:/usr/sbin/nologin\n',
      );
      assert.equal(recordOf(r.files.shadow, 'systemd-timesync'), 'systemd-timesync:!*:19500::::::');
      assert.equal(r.files.group?.split('\n').at(-2), 'systemd-timesync:x:998:');
      assert.equal(recordOf(r.files.gshadow, 'systemd-timesync'), 'systemd-timesync:!*::');
      assert.deepEqual(r.conflicts, []);
    });
  });

  describe('when the owner made local changes', () => {
    it('keeps the local user, the changed shell and the password hashes untouched', () => {
      const r = merge();
      assert.equal(
        recordOf(r.files.passwd, 'alice'),
        'alice:x:1000:1000:Alice:/home/alice:/bin/bash',
      );
      assert.equal(recordOf(r.files.passwd, 'root'), 'root:x:0:0:root:/root:/bin/zsh');
      assert.equal(recordOf(r.files.shadow, 'root'), 'root:$y$j9T$secret$hash:19600:0:99999:7:::');
      assert.equal(recordOf(r.files.shadow, 'alice'), 'alice:$6$salt$alicehash:19600:0:99999:7:::');
    });

    it('keeps a default user the new image dropped, and does not bring back one the owner deleted', () => {
      const newDefaults = { ...NEW, passwd: NEW.passwd?.replace(/^games:.*\n/m, '') };
      const live = { ...LIVE, passwd: LIVE.passwd?.replace(/^daemon:.*\n/m, '') };
      const r = merge(live, newDefaults);
      assert.ok(recordOf(r.files.passwd, 'games'));
      assert.equal(recordOf(r.files.passwd, 'daemon'), undefined);
    });
  });

  describe('when the new image adds a member to a group', () => {
    it('appends the member to the live member list of group and gshadow', () => {
      const r = merge();
      assert.equal(recordOf(r.files.group, 'adm'), 'adm:x:4:alice,systemd-timesync');
      assert.equal(recordOf(r.files.gshadow, 'adm'), 'adm:*::alice,systemd-timesync');
    });
  });

  describe('when a new user takes the id of a local user', () => {
    it('does not add it and records an id-collision', () => {
      const live = { ...LIVE, passwd: LIVE.passwd + 'bob:x:998:100::/home/bob:/bin/sh\n' };
      const r = merge(live);
      assert.equal(recordOf(r.files.passwd, 'systemd-timesync'), undefined);
      assert.equal(recordOf(r.files.shadow, 'systemd-timesync'), undefined);
      assert.deepEqual(
        r.conflicts.map((c) => [c.file, c.name, c.kind]),
        [['passwd', 'systemd-timesync', 'id-collision']],
      );
      // The group (gid 998) is free, so it still arrives.
      assert.ok(recordOf(r.files.group, 'systemd-timesync'));
    });

    it('records an id-collision when a live user of the same name has another id', () => {
      const live = { ...LIVE, passwd: LIVE.passwd + 'systemd-timesync:x:990:990::/:/bin/false\n' };
      const r = merge(live);
      assert.equal(
        recordOf(r.files.passwd, 'systemd-timesync'),
        'systemd-timesync:x:990:990::/:/bin/false',
      );
      assert.deepEqual(
        r.conflicts.map((c) => c.name),
        ['systemd-timesync'],
      );
    });
  });

  describe('when live lacks a file', () => {
    it('returns no content for it', () => {
      const r = merge({ passwd: LIVE.passwd, group: LIVE.group });
      assert.equal(r.files.shadow, undefined);
      assert.ok(r.files.passwd?.includes('systemd-timesync'));
    });
  });

  describe('when a line is malformed', () => {
    it('refuses a wrong field count with ETC_PASSWD_INVALID', () => {
      const live = { ...LIVE, passwd: LIVE.passwd + 'mallory:x:1001:1001\n' };
      assert.throws(
        () => merge(live),
        (e) => isFerryError(e, 'ETC_PASSWD_INVALID'),
      );
    });

    it('refuses a non-numeric uid and an oversized file', () => {
      assert.throws(
        () => parseUserDb('passwd', 'x:x:abc:0::/:/bin/sh\n'),
        (e) => isFerryError(e, 'ETC_PASSWD_INVALID'),
      );
      const big = 'a:x:1:\n'.repeat(USER_DB_MAX_BYTES / 7 + 1);
      assert.throws(
        () => parseUserDb('group', big),
        (e) => isFerryError(e, 'ETC_PASSWD_INVALID'),
      );
    });

    it('accepts NIS compat lines with empty ids', () => {
      assert.equal(parseUserDb('passwd', '+::::::\n').byName.size, 1);
    });
  });
});
