import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify, TomlError } from 'smol-toml';
import { isFerryError } from '@ferry/core';
import { tempDir } from '@ferry/testing';
import {
  BOOTLOADER_NAMES,
  bootableSlots,
  loadConfig,
  MAX_CONFIG_BYTES,
  parseConfig,
  slotGroup,
} from './config.ts';

type Doc = Record<string, Record<string, unknown>>;

/** A valid config as data: tests change one thing and serialise it. */
function base(): Doc {
  return {
    system: { compatible: 'acme-gw', bootloader: 'grub' },
    bootloader: { grub: { env: '/boot/grub/grubenv' } },
    slot: {
      rootfs: {
        '0': { device: '/dev/vda3', bootname: 'A' },
        '1': { device: '/dev/vda4', bootname: 'B' },
      },
      boot: { '0': { device: '/dev/vda1', parent: 'rootfs.0' } },
    },
  };
}

/** Sets `value` at a dotted path ('slot.rootfs.0.offset'); undefined deletes the key. */
function withValue(path: string, value: unknown): Doc {
  const doc = base();
  const keys = path.split('.');
  let t = doc as Record<string, unknown>;
  for (const k of keys.slice(0, -1)) t = (t[k] ??= {}) as Record<string, unknown>;
  const last = keys[keys.length - 1]!;
  if (value === undefined) delete t[last];
  else t[last] = value;
  return doc;
}

const parseDoc = (doc: Doc, root = '/') => parseConfig(stringify(doc), { root });
const invalid = (e: unknown) => isFerryError(e, 'CONFIG_INVALID');
const refuses = (doc: Doc) => assert.throws(() => parseDoc(doc), invalid);

describe('parseConfig', () => {
  describe('when the file is minimal', () => {
    const c = parseDoc(base());

    it('fills in every default', () => {
      assert.equal(c.bootAttempts, 3);
      assert.equal(c.dataDir, '/var/lib/ferry');
      assert.equal(c.keyring, '/etc/ferry/keyring');
      assert.deepEqual(c.policy, { allowDowngrade: false, allowReinstall: true });
      assert.deepEqual(c.health, { dir: '/etc/ferry/health.d', timeoutSeconds: 60 });
      assert.equal(c.path, '/etc/ferry/system.toml');
    });

    it('names slots <class>.<index> in file order with offset 0 and not readonly', () => {
      assert.deepEqual(
        c.slots.map((s) => [s.name, s.class, s.offset, s.readonly, s.size]),
        [
          ['rootfs.0', 'rootfs', 0, false, undefined],
          ['rootfs.1', 'rootfs', 0, false, undefined],
          ['boot.0', 'boot', 0, false, undefined],
        ],
      );
    });

    it('passes the backend its own options table', () => {
      assert.deepEqual(c.bootloader, { backend: 'grub', options: { env: '/boot/grub/grubenv' } });
    });

    it('lists the bootable slots and each group', () => {
      assert.deepEqual(
        bootableSlots(c).map((s) => s.bootname),
        ['A', 'B'],
      );
      assert.deepEqual(
        slotGroup(c, c.slots[0]!).map((s) => s.name),
        ['rootfs.0', 'boot.0'],
      );
      assert.deepEqual(
        slotGroup(c, c.slots[1]!).map((s) => s.name),
        ['rootfs.1'],
      );
    });
  });

  describe('when every key is given', () => {
    const doc = base();
    Object.assign(doc.system!, { 'boot-attempts': 5, 'data-directory': '/data/ferry' });
    doc.keyring = { path: '/etc/keys' };
    doc.policy = { 'allow-downgrade': true, 'allow-reinstall': false };
    doc.health = { directory: '/etc/checks', timeout: 7 };
    (doc.slot!.boot as Doc)['0'] = {
      device: '/d.img',
      offset: 1024,
      size: 4096,
      readonly: true,
      parent: 'rootfs.0',
    };
    const c = parseDoc(doc, '/tmp/fake-root');

    it('joins every path with the system root', () => {
      assert.equal(c.dataDir, '/tmp/fake-root/data/ferry');
      assert.equal(c.keyring, '/tmp/fake-root/etc/keys');
      assert.equal(c.health.dir, '/tmp/fake-root/etc/checks');
      assert.equal(c.slots[0]!.device, '/tmp/fake-root/dev/vda3');
      assert.equal(c.path, '/tmp/fake-root/etc/ferry/system.toml');
    });

    it('keeps every value', () => {
      assert.equal(c.bootAttempts, 5);
      assert.deepEqual(c.policy, { allowDowngrade: true, allowReinstall: false });
      assert.equal(c.health.timeoutSeconds, 7);
      assert.deepEqual(c.slots[2], {
        name: 'boot.0',
        class: 'boot',
        device: '/tmp/fake-root/d.img',
        offset: 1024,
        size: 4096,
        readonly: true,
        parent: 'rootfs.0',
      });
    });
  });

  describe('when a key has the wrong type', () => {
    // [key, wrong value, a right value]: the right value parses, so the wrong one is the fault.
    const cases: [string, unknown, unknown][] = [
      ['system.compatible', 1, 'x'],
      ['system.bootloader', true, 'grub'],
      ['system.boot-attempts', '3', 4],
      ['system.boot-attempts', 2.5, 2],
      ['system.data-directory', 5, '/data'],
      ['keyring.path', ['/k'], '/k'],
      ['policy.allow-downgrade', 'no', false],
      ['policy.allow-reinstall', 1, true],
      ['health.directory', false, '/h'],
      ['health.timeout', 1.5, 2],
      ['slot.rootfs.0.device', 3, '/dev/sda'],
      ['slot.rootfs.0.offset', '0', 512],
      ['slot.rootfs.0.size', 1.5, 512],
      ['slot.rootfs.0.bootname', 1, 'C'],
      ['slot.boot.0.parent', 2, 'rootfs.1'],
      ['slot.rootfs.0.readonly', 'yes', true],
      ['system.compatible', new Date(0), 'x'],
    ];
    for (const [key, wrong, right] of cases)
      it(`refuses ${key} = ${JSON.stringify(wrong)}`, () => {
        assert.doesNotThrow(() => parseDoc(withValue(key, right)));
        refuses(withValue(key, wrong));
      });
  });

  describe('when a key is unknown', () => {
    for (const key of [
      'colour',
      'system.colour',
      'keyring.colour',
      'policy.colour',
      'health.colour',
      'slot.rootfs.0.colour',
      'slot.rootfs.0.type',
    ])
      it(`refuses ${key}`, () => refuses(withValue(key, 'x')));

    it('refuses a value where a table belongs', () => {
      refuses(withValue('system', 'x'));
      refuses(withValue('slot', 'x'));
      refuses(withValue('slot.rootfs.2', 'x'));
      refuses(withValue('bootloader.grub', 'x'));
    });

    it('leaves keys inside [bootloader.<name>] to the backend', () => {
      const c = parseDoc(withValue('bootloader.grub.colour', 'x'));
      assert.equal(c.bootloader.options.colour, 'x');
    });

    it('refuses __proto__ anywhere', () => {
      assert.throws(
        () =>
          parseConfig(`${stringify(base())}\n[slot.rootfs.0.__proto__]\nx = 1\n`, { root: '/' }),
        invalid,
      );
    });
  });

  describe('when a required key is missing', () => {
    for (const key of ['system.compatible', 'system.bootloader', 'slot.rootfs.0.device'])
      it(`refuses without ${key}`, () => refuses(withValue(key, undefined)));

    it('refuses an empty compatible', () => refuses(withValue('system.compatible', '  ')));
  });

  describe('when a path is not absolute', () => {
    for (const key of [
      'system.data-directory',
      'keyring.path',
      'health.directory',
      'slot.rootfs.1.device',
    ]) {
      it(`refuses a relative ${key}`, () => refuses(withValue(key, 'var/x')));
      it(`refuses '..' in ${key}`, () => refuses(withValue(key, '/var/../../etc')));
    }

    it('refuses a relative system root', () => {
      assert.throws(() => parseConfig(stringify(base()), { root: 'tmp/x' }), invalid);
    });
  });

  describe('when the bootloader is chosen', () => {
    for (const name of BOOTLOADER_NAMES)
      it(`accepts ${name}`, () => {
        const doc = withValue('system.bootloader', name);
        doc.bootloader = {};
        assert.equal(parseDoc(doc).bootloader.backend, name);
      });

    it('refuses a name not in BOOTLOADER_NAMES', () =>
      refuses(withValue('system.bootloader', 'lilo')));
    it('refuses options of another backend', () =>
      refuses(withValue('bootloader.uboot', { env: '/x' })));
    it('gives empty options when the table is absent', () => {
      assert.deepEqual(parseDoc(withValue('bootloader', undefined)).bootloader.options, {});
    });
  });

  describe('when a number is out of range', () => {
    const cases: [string, number, number][] = [
      ['system.boot-attempts', 0, 1],
      ['system.boot-attempts', 10, 9],
      ['health.timeout', 0, 1],
      ['slot.rootfs.0.offset', 100, 512],
      ['slot.rootfs.0.offset', -512, 0],
      ['slot.rootfs.0.size', 0, 1],
      ['slot.rootfs.0.size', -1, 1],
      ['update.parallel', 0, 1],
      ['update.parallel', 65, 64],
      ['update.bandwidth', -1, 0],
      ['daemon.interval', 9, 10],
    ];
    for (const [key, wrong, right] of cases)
      it(`refuses ${key} = ${wrong}`, () => {
        assert.doesNotThrow(() => parseDoc(withValue(key, right)));
        refuses(withValue(key, wrong));
      });
  });

  describe('when [update] and [daemon] are set', () => {
    it('defaults to the stable channel, 4 connections and no repository', () => {
      const c = parseDoc(base());
      assert.equal(c.update.repository, undefined);
      assert.equal(c.update.channel, 'stable');
      assert.equal(c.update.parallel, 4);
      assert.equal(c.update.trustedRoot, '/etc/ferry/repository-root.json');
      assert.deepEqual([c.daemon.install, c.daemon.reboot], ['auto', 'now']);
    });
    it('refuses a repository that is not an http(s) URL', () => {
      assert.doesNotThrow(() => parseDoc(withValue('update.repository', 'https://u.example/r')));
      refuses(withValue('update.repository', 'ftp://u.example/r'));
      refuses(withValue('update.repository', '/srv/repo'));
    });
    it('refuses an unknown policy and a window reboot without a window', () => {
      refuses(withValue('daemon.install', 'sometimes'));
      refuses(withValue('daemon.reboot', 'window'));
      refuses(withValue('daemon.window', '25:00-02:00'));
      refuses(withValue('daemon.window', '02:00-02:00'));
      const c = parseDoc(withValue('daemon.window', '23:30-01:00'));
      assert.deepEqual(c.daemon.window, { start: 1410, end: 60 });
    });
    it('refuses a malformed channel', () => refuses(withValue('update.channel', 'Stable')));
  });

  describe('when [server] is set', () => {
    it('has no fleet server without a url', () => assert.equal(parseDoc(base()).server, undefined));
    it('defaults the device key to the data directory and the director keyring to /etc/ferry', () => {
      const c = parseDoc(withValue('server.url', 'https://fleet.example/'), '/r');
      assert.deepEqual(c.server, {
        url: 'https://fleet.example',
        key: '/r/var/lib/ferry/device.key',
        directorKeyring: '/r/etc/ferry/director-keyring',
      });
    });
    it('refuses a url that is not http(s), and keys without a url', () => {
      refuses(withValue('server.url', 'fleet.example'));
      refuses(withValue('server.token', 'abc'));
      const doc = withValue('server.url', 'https://f.example');
      (doc.server as Record<string, unknown>).token = 'has space';
      refuses(doc);
    });
  });

  describe('when [deploy] is set', () => {
    /** The boot side of [deploy] when none of its keys is given, under root /r. */
    const BOOT_DEFAULTS = {
      boot: 'none',
      bootDir: '/r/efi',
      grubEnv: '/r/efi/grub/grubenv',
      kernelRoot: 'PARTLABEL=data',
      kernelArgs: [],
      bootAttempts: 3,
    };
    it('defaults to a store and conflict dir under the data directory, 3 kept, hardlinks', () => {
      const c = parseDoc(withValue('system.data-directory', '/data'), '/r');
      assert.deepEqual(c.deploy, {
        store: '/r/data/deploy',
        keep: 3,
        checkout: 'hardlink',
        etcConflicts: '/r/data/etc-conflicts',
        ...BOOT_DEFAULTS,
      });
    });
    it('joins given paths with the system root and keeps the values', () => {
      const doc = base();
      doc.deploy = { store: '/d/store', keep: 5, checkout: 'reflink', 'etc-conflicts': '/d/c' };
      assert.deepEqual(parseDoc(doc, '/r').deploy, {
        store: '/r/d/store',
        keep: 5,
        checkout: 'reflink',
        etcConflicts: '/r/d/c',
        ...BOOT_DEFAULTS,
      });
    });
    it('reads the boot side: backend, boot dir, grubenv, kernel arguments, attempts', () => {
      const doc = base();
      doc.deploy = {
        boot: 'grub',
        'kernel-root': 'UUID=1234',
        'kernel-args': 'console=ttyS0  quiet',
        'boot-attempts': 2,
      };
      const d = parseDoc(doc, '/r').deploy;
      assert.deepEqual(
        [d.boot, d.bootDir, d.grubEnv, d.kernelRoot, d.kernelArgs, d.bootAttempts],
        ['grub', '/r/boot', '/r/boot/grub/grubenv', 'UUID=1234', ['console=ttyS0', 'quiet'], 2],
      );
    });
    it('refuses an unknown boot backend, attempts out of range and a quoted kernel root', () => {
      refuses(withValue('deploy.boot', 'lilo'));
      refuses(withValue('deploy.boot-attempts', 0));
      refuses(withValue('deploy.boot-attempts', 10));
      refuses(withValue('deploy.kernel-root', 'UUID="x"'));
      refuses(withValue('deploy.boot-dir', 'boot'));
    });
    it('accepts a device without slots when it boots deployments, and only then', () => {
      const doc = withValue('slot', undefined);
      refuses(doc);
      (doc as Record<string, unknown>).deploy = { boot: 'systemd-boot' };
      assert.equal(parseDoc(doc).slots.length, 0);
    });
    it('refuses an unknown key, checkout mode, keep out of range and relative paths', () => {
      refuses(withValue('deploy.colour', 'x'));
      refuses(withValue('deploy.checkout', 'symlink'));
      refuses(withValue('deploy.keep', 0));
      refuses(withValue('deploy.keep', 101));
      refuses(withValue('deploy.keep', '3'));
      refuses(withValue('deploy.store', 'var/deploy'));
      refuses(withValue('deploy.etc-conflicts', '/var/../../x'));
      assert.doesNotThrow(() => parseDoc(withValue('deploy.keep', 1)));
    });
  });

  describe('when the reboot method and [kexec] are set', () => {
    it('defaults to a firmware reboot, and kexec to /boot/vmlinuz, /boot/initrd.img, root={device}', () => {
      const c = parseDoc(base());
      assert.equal(c.rebootMethod, 'firmware');
      assert.deepEqual(c.kexec, {
        kernel: '/boot/vmlinuz',
        initrd: '/boot/initrd.img',
        cmdline: 'root={device} ro ferry.slot={bootname}',
        fallback: true,
      });
    });
    it('keeps given values; an empty initrd means none', () => {
      const doc = withValue('system.reboot-method', 'kexec');
      doc.kexec = {
        kernel: '/vmlinuz',
        initrd: '',
        cmdline: 'root=PARTLABEL=r-{bootname-lower}',
        fallback: false,
      };
      const c = parseDoc(doc);
      assert.equal(c.rebootMethod, 'kexec');
      assert.deepEqual(c.kexec, {
        kernel: '/vmlinuz',
        initrd: '',
        cmdline: 'root=PARTLABEL=r-{bootname-lower}',
        fallback: false,
      });
    });
    it('refuses an unknown method, a path leaving the image, an unknown placeholder, an unknown key', () => {
      refuses(withValue('system.reboot-method', 'warm'));
      refuses(withValue('kexec.kernel', 'boot/vmlinuz'));
      refuses(withValue('kexec.initrd', '/boot/../../etc/shadow'));
      refuses(withValue('kexec.cmdline', 'root={root}'));
      refuses(withValue('kexec.cmdline', 'ro\ninit=/bin/sh'));
      refuses(withValue('kexec.append', 'x'));
    });
  });

  describe('when names are malformed', () => {
    it('refuses a bootname with a space or a dot', () => {
      refuses(withValue('slot.rootfs.0.bootname', 'A B'));
      refuses(withValue('slot.rootfs.0.bootname', 'rootfs.1'));
    });
    it('refuses a class with a dot', () => {
      const doc = base();
      (doc.slot as Doc)['root.fs'] = { '0': { device: '/dev/x' } };
      refuses(doc);
    });
    it('refuses an index with a leading zero', () =>
      refuses(withValue('slot.rootfs.01', { device: '/dev/x' })));
  });

  describe('when the slots break a rule', () => {
    it('refuses fewer than two bootable slots', () => {
      refuses(withValue('slot.rootfs.1.bootname', undefined));
    });
    it('refuses a duplicate bootname', () => refuses(withValue('slot.rootfs.1.bootname', 'A')));
    it('refuses a parent that does not exist', () =>
      refuses(withValue('slot.boot.0.parent', 'rootfs.7')));
    it('refuses a parent without a bootname', () => {
      refuses(withValue('slot.app.0', { device: '/dev/vda9', parent: 'boot.0' }));
    });
    it('refuses a child slot with a bootname', () =>
      refuses(withValue('slot.boot.0.bootname', 'C')));
    it('refuses two slots of one class in a group', () => {
      refuses(withValue('slot.boot.1', { device: '/dev/vda2', parent: 'rootfs.0' }));
      assert.doesNotThrow(() =>
        parseDoc(withValue('slot.boot.1', { device: '/dev/vda2', parent: 'rootfs.1' })),
      );
    });
  });

  describe('when two slots share a device', () => {
    const two = (a: Record<string, unknown>, b: Record<string, unknown>) => {
      const doc = base();
      (doc.slot!.rootfs as Doc)['0'] = { device: '/disk.img', bootname: 'A', ...a };
      (doc.slot!.rootfs as Doc)['1'] = { device: '/disk.img', bootname: 'B', ...b };
      return doc;
    };
    it('accepts adjacent regions', () => {
      assert.doesNotThrow(() => parseDoc(two({ offset: 512, size: 1024 }, { offset: 1536 })));
    });
    it('refuses overlapping regions', () => {
      refuses(two({ offset: 512, size: 1536 }, { offset: 1536, size: 512 }));
    });
    it('refuses a region without size before another', () =>
      refuses(two({ offset: 0 }, { offset: 4096 })));
    it('refuses two regions at the same offset', () => refuses(two({ size: 512 }, { size: 512 })));
  });

  describe('when the text is not valid TOML', () => {
    it('reports the line and column', () => {
      const text = '[system]\ncompatible = "x"\nbootloader = \n';
      assert.throws(
        () => parseConfig(text, { root: '/' }),
        (e) => invalid(e) && e.cause instanceof TomlError && e.cause.line === 3,
      );
    });
    it('refuses a redefined table', () => {
      assert.throws(() => parseConfig(`${stringify(base())}\n[system]\n`, { root: '/' }), invalid);
    });
  });

  describe('when the text is too large', () => {
    it('refuses it before parsing', () => {
      const text = `${stringify(base())}#${'x'.repeat(MAX_CONFIG_BYTES)}\n`;
      assert.throws(() => parseConfig(text, { root: '/' }), invalid);
    });
  });
});

describe('loadConfig', () => {
  describe('when the file is under a system root', () => {
    it('reads <root>/etc/ferry/system.toml and joins paths with the root', async () => {
      const { dir, cleanup } = await tempDir('ferry-config-');
      try {
        await mkdir(join(dir, 'etc/ferry'), { recursive: true });
        await writeFile(join(dir, 'etc/ferry/system.toml'), stringify(base()));
        const c = await loadConfig({ root: dir });
        assert.equal(c.path, join(dir, 'etc/ferry/system.toml'));
        assert.equal(c.slots[1]!.device, join(dir, 'dev/vda4'));
      } finally {
        await cleanup();
      }
    });

    it('takes the root from FERRY_ROOT', async () => {
      const { dir, cleanup } = await tempDir('ferry-config-');
      const saved = process.env.FERRY_ROOT;
      try {
        await mkdir(join(dir, 'etc/ferry'), { recursive: true });
        await writeFile(join(dir, 'etc/ferry/system.toml'), stringify(base()));
        process.env.FERRY_ROOT = dir;
        assert.equal((await loadConfig()).root, dir);
      } finally {
        if (saved === undefined) delete process.env.FERRY_ROOT;
        else process.env.FERRY_ROOT = saved;
        await cleanup();
      }
    });
  });

  describe('when the file is missing or unreadable', () => {
    it('fails with IO', async () => {
      await assert.rejects(loadConfig({ path: '/nonexistent/system.toml', root: '/' }), (e) =>
        isFerryError(e, 'IO'),
      );
    });
    it('refuses invalid UTF-8 and oversized files', async () => {
      const { dir, cleanup } = await tempDir('ferry-config-');
      try {
        await writeFile(join(dir, 'bad.toml'), Buffer.from([0x5b, 0xff, 0x5d]));
        await writeFile(join(dir, 'big.toml'), Buffer.alloc(MAX_CONFIG_BYTES + 1, 0x23));
        await assert.rejects(loadConfig({ path: join(dir, 'bad.toml'), root: dir }), invalid);
        await assert.rejects(loadConfig({ path: join(dir, 'big.toml'), root: dir }), invalid);
      } finally {
        await cleanup();
      }
    });
  });
});

describe('docs/config.md', () => {
  const doc = readFile(join(import.meta.dirname, '../../../docs/config.md'), 'utf8');
  const example = async (heading: string) => {
    const text = await doc;
    const at = text.indexOf(`\n## ${heading}\n`);
    assert.ok(at >= 0, `heading '${heading}' is in the doc`);
    const m = /```toml\n([\s\S]*?)```/.exec(text.slice(at));
    assert.ok(m?.[1]);
    return m[1];
  };

  describe('when the examples are parsed', () => {
    it('parses the A/B GRUB example', async () => {
      const c = parseConfig(await example('Example: A/B GRUB device'), { root: '/' });
      assert.equal(c.bootloader.backend, 'grub');
      assert.equal(c.update.repository, 'https://updates.example.com/acme');
      assert.deepEqual(c.daemon.window, { start: 120, end: 270 });
      assert.deepEqual(
        bootableSlots(c).map((s) => s.bootname),
        ['A', 'B'],
      );
    });
    it('parses the file-backed example', async () => {
      const c = parseConfig(await example('Example: file-backed demo device'), { root: '/' });
      assert.equal(c.bootloader.backend, 'file');
      assert.equal(c.slots.filter((s) => s.device.endsWith('disk.img')).length, 2);
    });
  });
});
