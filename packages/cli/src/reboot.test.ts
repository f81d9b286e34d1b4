import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmod, mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeDevice, needs, type DeviceFixture } from '@ferry/testing';

const FERRY = join(import.meta.dirname, '..', 'bin', 'ferry');

/**
 * A stand-in for kexec-tools' `kexec`: records its arguments; `-l` keeps copies of the kernel
 * and initrd it was given (they are inside the mounted image, which is gone afterwards); `-e`
 * keeps the bootloader state as the new kernel would find it, then kills its caller, as a
 * successful jump ends the running system. `fail-load` / `fail-exec` files make it fail.
 */
const FAKE_KEXEC = `#!/bin/sh
d=$(dirname "$0")
echo "$*" >>"$d/kexec.log"
case "$1" in
  -l)
    [ -f "$d/fail-load" ] && { echo "Cannot load kernel: fake failure" >&2; exit 1; }
    cp "$2" "$d/loaded-kernel"
    for a in "$@"; do case "$a" in --initrd=*) cp "\${a#--initrd=}" "$d/loaded-initrd" ;; esac; done ;;
  -e)
    cp "$FAKE_BOOT_JSON" "$d/boot-at-exec.json"
    [ -f "$d/fail-exec" ] && exit 1
    kill -KILL $PPID ;;
esac
exit 0
`;

const FAKE_REBOOT = `#!/bin/sh\necho firmware >>"$(dirname "$0")/reboot.log"\n`;

interface Run {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

describe('ferry reboot', needs('root', 'loop', 'mksquashfs'), () => {
  let d: DeviceFixture;
  let bin: string;
  let bootJson: string;
  before(async () => {
    d = await makeDevice({ slotMiB: 8 });
    bin = join(d.root, 'fake-bin');
    await mkdir(bin);
    await writeFile(join(bin, 'kexec'), FAKE_KEXEC);
    await writeFile(join(bin, 'reboot'), FAKE_REBOOT);
    await chmod(join(bin, 'kexec'), 0o755);
    await chmod(join(bin, 'reboot'), 0o755);
    bootJson = join(d.root, 'boot', 'ferry-boot.json');
    // Release 2.0.0: an image with a kernel and an initramfs where [kexec] looks by default.
    const tree = join(d.root, 'tree');
    await mkdir(join(tree, 'boot'), { recursive: true });
    await writeFile(join(tree, 'boot', 'vmlinuz'), 'kernel of 2.0.0\n');
    await writeFile(join(tree, 'boot', 'initrd.img'), 'initramfs of 2.0.0\n');
    const image = join(d.root, 'rootfs-2.sqfs');
    const mk = spawnSync('mksquashfs', [tree, image, '-noappend', '-quiet', '-comp', 'gzip']);
    assert.equal(mk.status, 0, mk.stderr?.toString());
    const bundle = await d.bundle(image, { version: '2.0.0', counter: 2 });
    const r = ferry('install', bundle);
    assert.equal(r.status, 0, r.stderr);
  });
  after(() => d?.cleanup());

  function ferry(...args: string[]): Run {
    const r = spawnSync(FERRY, [...args, '--root', d.root], {
      encoding: 'utf8',
      env: {
        ...process.env,
        FERRY_KEXEC_COMMAND: join(bin, 'kexec'),
        FERRY_REBOOT_COMMAND: join(bin, 'reboot'),
        FAKE_BOOT_JSON: bootJson,
      },
    });
    return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
  }

  /** Runs `fn` and puts the fakes' records and boot.json back as they were. */
  async function attempt(fn: () => Promise<void>): Promise<void> {
    const boot = await readFile(bootJson);
    try {
      await fn();
    } finally {
      await writeFile(bootJson, boot);
      for (const f of ['kexec.log', 'reboot.log', 'loaded-kernel', 'loaded-initrd'])
        await rm(join(bin, f), { force: true });
      for (const f of ['boot-at-exec.json', 'fail-load', 'fail-exec'])
        await rm(join(bin, f), { force: true });
    }
  }

  const log = async (name: string) =>
    (await readFile(join(bin, name), 'utf8').catch(() => '')).split('\n').filter(Boolean);
  const mounts = async () =>
    (await readFile('/proc/self/mounts', 'utf8')).split('\n').filter((l) => l.includes(d.root));

  describe('when B holds an installed update and --kexec is asked', () => {
    it("loads B's kernel and initrd from B's image, counts B's attempt, syncs and jumps", () =>
      attempt(async () => {
        const r = ferry('reboot', '--kexec', '--json');
        assert.equal(r.signal, 'SIGKILL', `${r.stdout}\n${r.stderr}`);
        const calls = await log('kexec.log');
        assert.equal(calls.length, 2, calls.join('\n'));
        assert.match(calls[0]!, /^-l \/\S+\/boot\/vmlinuz --initrd=\/\S+\/boot\/initrd\.img /);
        assert.ok(
          calls[0]!.endsWith(`--command-line=root=${d.root}/dev/disk.img ro ferry.slot=B`),
          calls[0],
        );
        assert.equal(calls[1], '-e');
        assert.equal(await readFile(join(bin, 'loaded-kernel'), 'utf8'), 'kernel of 2.0.0\n');
        assert.equal(await readFile(join(bin, 'loaded-initrd'), 'utf8'), 'initramfs of 2.0.0\n');
        // The attempt was counted before the jump, as the bootloader counts it at boot.
        const atExec = JSON.parse(await readFile(join(bin, 'boot-at-exec.json'), 'utf8')) as {
          order: string[];
          slots: Record<string, { left?: number }>;
        };
        assert.deepEqual([atExec.order[0], atExec.slots.B?.left], ['B', 2]);
        const started = JSON.parse(r.stdout.split('\n')[0]!) as Record<string, unknown>;
        assert.deepEqual(
          [started.id, started.method, started.bootname, started.attemptsLeft],
          ['reboot.started', 'kexec', 'B', 2],
        );
        assert.deepEqual(await mounts(), [], 'the image is unmounted before the jump');
        assert.deepEqual(await log('reboot.log'), []);
      }));
  });

  describe('when kexec cannot load the kernel', () => {
    it('refuses with KEXEC_FAILED and leaves the device as it was', () =>
      attempt(async () => {
        await writeFile(join(bin, 'fail-load'), '');
        const before = await readFile(bootJson, 'utf8');
        const r = ferry('reboot', '--kexec');
        assert.equal(r.status, 1);
        assert.match(r.stderr, /^ferry: error\[KEXEC_FAILED\]: .*fake failure/);
        assert.equal(await readFile(bootJson, 'utf8'), before);
        assert.equal((await log('kexec.log')).length, 1, 'no -e');
        assert.deepEqual(await log('reboot.log'), [], '--kexec never falls back');
        assert.deepEqual(await mounts(), []);
      }));
  });

  describe('when [system] reboot-method is kexec and the load fails', () => {
    it('falls back to a firmware reboot, saying why', () =>
      attempt(async () => {
        const config = await readFile(d.configPath, 'utf8');
        await writeFile(
          d.configPath,
          config.replace('[system]\n', '[system]\nreboot-method = "kexec"\n'),
        );
        try {
          await writeFile(join(bin, 'fail-load'), '');
          const r = ferry('reboot');
          assert.equal(r.status, 0, r.stderr);
          assert.match(r.stdout, /kexec failed \[KEXEC_FAILED\]: .*rebooting through the firmware/);
          assert.deepEqual(await log('reboot.log'), ['firmware']);
        } finally {
          await writeFile(d.configPath, config);
        }
      }));
  });

  describe('when kexec -e returns instead of jumping', () => {
    it('gives the counted attempt back and unloads the kernel', () =>
      attempt(async () => {
        await writeFile(join(bin, 'fail-exec'), '');
        const before = await readFile(bootJson, 'utf8');
        const r = ferry('reboot', '--kexec');
        assert.equal(r.status, 1);
        assert.match(r.stderr, /error\[KEXEC_FAILED\]: kexec -e did not start rootfs\.1/);
        const atExec = await readFile(join(bin, 'boot-at-exec.json'), 'utf8');
        assert.notEqual(atExec, before, 'counted before -e');
        assert.deepEqual(JSON.parse(await readFile(bootJson, 'utf8')), JSON.parse(before));
        assert.deepEqual((await log('kexec.log')).slice(1), ['-e', '-u']);
      }));
  });

  describe('when B no longer holds the image installed there', () => {
    it('refuses with IMAGE_HASH_MISMATCH before anything is loaded', () =>
      attempt(async () => {
        const b = d.partitions.rootB!;
        const fh = await open(d.disk, 'r+');
        const byte = Buffer.alloc(1);
        try {
          await fh.read(byte, 0, 1, b.offset + 100);
          await fh.write(Buffer.from([byte[0]! ^ 0xff]), 0, 1, b.offset + 100);
          const r = ferry('reboot', '--kexec');
          assert.equal(r.status, 1);
          assert.match(r.stderr, /error\[IMAGE_HASH_MISMATCH\]/);
          assert.deepEqual(await log('kexec.log'), []);
        } finally {
          await fh.write(byte, 0, 1, b.offset + 100);
          await fh.close();
        }
      }));
  });

  describe('when both --kexec and --firmware are given', () => {
    it('is a usage error', () => {
      assert.equal(ferry('reboot', '--kexec', '--firmware').status, 2);
    });
  });
});
