import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, truncate, writeFile, copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  BUNDLE_HEADER_SIZE,
  canonicalBytes,
  decodeHeader,
  encodeBundleHead,
  generateKeyPair,
  isFerryError,
  parsePrivateKey,
  type ErrorCode,
} from '@ferry/core';
import { imageLikeBytes, makeDevice, needs, type DeviceFixture } from '@ferry/testing';
import { Agent, type AgentEvent } from './agent.ts';
import type { FileBootloader } from './bootloader-file.ts';

const sfdisk = needs('sfdisk');
let dev: DeviceFixture;
let v1: Buffer;
let v2: Buffer;

async function agent(): Promise<Agent> {
  return Agent.open({ root: dev.root });
}

async function install(bundle: string, events?: AgentEvent[]) {
  return (await agent()).install(bundle, events ? (e) => events.push(e) : undefined);
}

/** The bootloader side: one boot of the file backend's model, then the kernel command line. */
async function rebootDevice(): Promise<string | undefined> {
  const booted = await ((await agent()).bootloader as FileBootloader).boot();
  if (booted) await dev.boot(booted);
  return booted;
}

/** Runs `fn`, expects a refusal with `code`, and checks that no byte of the disk changed. */
async function refused(code: ErrorCode, fn: () => Promise<unknown>) {
  const bootFile = join(dev.root, 'boot/ferry-boot.json');
  const bootBefore = await readFile(bootFile, 'utf8').catch(() => 'none');
  const before = await dev.digest();
  await assert.rejects(fn, (e) => isFerryError(e, code));
  assert.equal(await dev.digest(), before, 'no byte of the disk changed');
  assert.equal(
    await readFile(bootFile, 'utf8').catch(() => 'none'),
    bootBefore,
    'the bootloader state is untouched',
  );
}

before(async () => {
  if (sfdisk.skip) return;
  dev = await makeDevice({ slotMiB: 8 });
  v1 = imageLikeBytes(3 * 1024 * 1024 + 512, 21);
  v2 = Buffer.from(v1);
  imageLikeBytes(200 * 1024, 22).copy(v2, 1024 * 1024);
  await writeFile(join(dev.root, 'v1.img'), v1);
  await writeFile(join(dev.root, 'v2.img'), v2);
});
after(() => dev?.cleanup());

describe('install', () => {
  describe('when the first release is installed from slot A', () => {
    it(
      'writes B, verifies it, stores the verity tree and makes B primary on trial',
      sfdisk,
      async () => {
        const bundle = await dev.bundle(join(dev.root, 'v1.img'), { version: '1.0.0', counter: 1 });
        const aBefore = await dev.digest('rootA');
        const events: AgentEvent[] = [];
        const r = await install(bundle, events);
        assert.equal(r.target, 'rootfs.1');
        assert.equal(r.bootname, 'B');
        assert.equal(await dev.digest('rootA'), aBefore, 'the booted slot is untouched');
        const disk = await readFile(dev.disk);
        const b = dev.partitions.rootB!;
        assert.ok(
          disk.subarray(b.offset, b.offset + v1.length).equals(v1),
          'slot B holds the image',
        );
        const ids = events.map((e) => e.id);
        assert.ok(
          ids.indexOf('install.started') < ids.indexOf('install.planned') &&
            ids.at(-1) === 'install.committed',
          ids.join(','),
        );
        const st = await (await agent()).status();
        assert.equal(st.primary, 'B');
        assert.equal(st.pendingSlot, 'rootfs.1');
        assert.equal(st.slots[1]!.boot?.attemptsLeft, 3);
        assert.equal(st.slots[1]!.record?.release?.version, '1.0.0');
      },
    );
    it(
      'boots B, passes the health checks and commits it, raising the downgrade floor',
      sfdisk,
      async () => {
        await dev.healthCheck('10-ok', 'exit 0');
        assert.equal(await rebootDevice(), 'B');
        const r = await (await agent()).bootCheck({ reboot: false });
        assert.equal(r.result, 'good');
        const st = await (await agent()).status();
        assert.equal(st.slots[1]!.boot?.state, 'good');
        assert.equal(st.slots[1]!.boot?.attemptsLeft, undefined, 'committed: no more counting');
        assert.equal(st.highWaterCounter, 1);
        assert.equal(st.pendingSlot, undefined);
      },
    );
  });

  describe('when an update is installed while B runs', () => {
    it('takes unchanged chunks from slot B and only the rest from the bundle', sfdisk, async () => {
      const bundle = await dev.bundle(join(dev.root, 'v2.img'), { version: '1.1.0', counter: 2 });
      const r = await install(bundle);
      assert.equal(r.target, 'rootfs.0');
      assert.ok(r.seededBytes > v2.length * 0.8, `seeded ${r.seededBytes}`);
      assert.ok(r.fetchedBytes < v2.length * 0.2, `fetched ${r.fetchedBytes}`);
      const disk = await readFile(dev.disk);
      const a = dev.partitions.rootA!;
      assert.ok(disk.subarray(a.offset, a.offset + v2.length).equals(v2));
    });
    it(
      'falls back to B by itself when A fails its health check, and records why',
      sfdisk,
      async () => {
        await dev.healthCheck('20-fail', 'echo "service x is down" >&2; exit 1');
        assert.equal(await rebootDevice(), 'A');
        const r = await (await agent()).bootCheck({ reboot: false });
        assert.equal(r.result, 'bad');
        assert.equal(await rebootDevice(), 'B', 'A is marked bad: the next boot is B');
        const again = await (await agent()).bootCheck({ reboot: false }).catch((e: unknown) => e);
        assert.ok(!isFerryError(again));
        const st = await (await agent()).status();
        assert.equal(st.lastRollback?.from, 'rootfs.0');
        assert.equal(st.lastRollback?.to, 'rootfs.1');
        assert.match(st.lastRollback?.reason ?? '', /20-fail/);
        await writeFile(join(dev.root, 'etc/ferry/health.d/20-fail'), '#!/bin/sh\nexit 0\n');
      },
    );
  });

  describe('when the bundle or the device is wrong', () => {
    it('refuses another device class', sfdisk, async () => {
      const b = await dev.bundle(join(dev.root, 'v2.img'), {
        version: '1.1.1',
        counter: 3,
        compatible: 'other-board',
        out: join(dev.root, 'other.fbd'),
      });
      await refused('BUNDLE_INCOMPATIBLE', () => install(b));
    });
    it('refuses a downgrade below the committed release counter', sfdisk, async () => {
      const b = await dev.bundle(join(dev.root, 'v1.img'), {
        version: '0.9.0',
        counter: 0,
        out: join(dev.root, 'old.fbd'),
      });
      await refused('BUNDLE_DOWNGRADE', () => install(b));
    });
    it('refuses a bundle signed by an unknown key', sfdisk, async () => {
      const key = parsePrivateKey(generateKeyPair().privateKeyPem);
      const b = await dev.bundle(join(dev.root, 'v2.img'), {
        version: '1.1.2',
        counter: 3,
        key,
        out: join(dev.root, 'evil.fbd'),
      });
      await refused('BUNDLE_UNKNOWN_SIGNER', () => install(b));
    });
    it('refuses a truncated bundle', sfdisk, async () => {
      const b = await dev.bundle(join(dev.root, 'v2.img'), {
        version: '1.1.3',
        counter: 3,
        out: join(dev.root, 'cut.fbd'),
      });
      await truncate(b, 100_000);
      await refused('BUNDLE_TRUNCATED', () => install(b));
    });
    it('refuses an image larger than the slot', sfdisk, async () => {
      await writeFile(join(dev.root, 'big.img'), imageLikeBytes(9 * 1024 * 1024, 5));
      const b = await dev.bundle(join(dev.root, 'big.img'), {
        version: '2.0.0',
        counter: 4,
        out: join(dev.root, 'big.fbd'),
      });
      await refused('INSTALL_SLOT_TOO_SMALL', () => install(b));
    });
  });

  describe('when the device itself is broken', () => {
    it('refuses a missing slot device before writing', sfdisk, async () => {
      const cfg = await readFile(dev.configPath, 'utf8');
      await writeFile(
        dev.configPath,
        cfg.replace(
          '[slot.rootfs.0]\ndevice = "/dev/disk.img"',
          '[slot.rootfs.0]\ndevice = "/dev/gone.img"',
        ),
      );
      assert.notEqual(await readFile(dev.configPath, 'utf8'), cfg);
      const b = await dev.bundle(join(dev.root, 'v2.img'), {
        version: '1.1.4',
        counter: 3,
        out: join(dev.root, 'gone.fbd'),
      });
      await refused('INSTALL_SLOT_MISSING', () => install(b));
      await writeFile(dev.configPath, cfg);
    });
    it('refuses to install when the bootloader state is corrupt', sfdisk, async () => {
      const path = join(dev.root, 'boot/ferry-boot.json');
      const saved = await readFile(path);
      await writeFile(path, '{"order": [tor');
      const b = await dev.bundle(join(dev.root, 'v2.img'), {
        version: '1.1.5',
        counter: 3,
        out: join(dev.root, 'corrupt-env.fbd'),
      });
      await refused('BOOTLOADER_STATE_INVALID', () => install(b));
      await writeFile(path, saved);
    });
    it('refuses an unsigned bundle', sfdisk, async () => {
      const b = await dev.bundle(join(dev.root, 'v2.img'), {
        version: '1.1.6',
        counter: 3,
        out: join(dev.root, 'unsigned.fbd'),
      });
      const bytes = await readFile(b);
      const h = decodeHeader(bytes.subarray(0, BUNDLE_HEADER_SIZE), bytes.length);
      const envelope = JSON.parse(
        bytes.subarray(BUNDLE_HEADER_SIZE, BUNDLE_HEADER_SIZE + h.envelopeLength).toString(),
      ) as { signed: unknown };
      const indexStart = BUNDLE_HEADER_SIZE + h.envelopeLength;
      const index = bytes.subarray(indexStart, indexStart + h.indexLength);
      const head = encodeBundleHead(
        canonicalBytes({ signed: envelope.signed, signatures: [] }),
        Buffer.from(index),
        h.payloadLength,
      );
      await writeFile(b, Buffer.concat([head, bytes.subarray(h.payloadOffset)]));
      await refused('BUNDLE_UNSIGNED', () => install(b));
    });
  });

  describe('when a health check hangs', () => {
    it('kills it at the timeout and counts it as a failure', sfdisk, async () => {
      await dev.healthCheck('30-hang', 'sleep 600');
      const cfg = await readFile(dev.configPath, 'utf8');
      await writeFile(dev.configPath, cfg.replace('timeout = 5', 'timeout = 1'));
      const start = Date.now();
      const r = await (await agent()).bootCheck({ reboot: false });
      assert.ok(Date.now() - start < 4000, 'the hanging check was cut off');
      const hang = r.checks.find((c) => c.name.endsWith('30-hang'));
      assert.equal(hang?.timedOut, true);
      assert.notEqual(r.result, 'good');
      await writeFile(dev.configPath, cfg);
      await writeFile(join(dev.root, 'etc/ferry/health.d/30-hang'), '#!/bin/sh\nexit 0\n');
    });
  });

  describe('when a seed chunk in a local slot is corrupt', () => {
    it(
      'notices it, fetches that chunk from the bundle, and installs a correct image',
      sfdisk,
      async () => {
        // Corrupt the first chunk of the running image in slot B (the seed for the next install).
        const fh = await import('node:fs/promises').then((m) => m.open(dev.disk, 'r+'));
        await fh.write(Buffer.from('garbage'), 0, 7, dev.partitions.rootB!.offset + 100);
        await fh.close();
        const b = await dev.bundle(join(dev.root, 'v2.img'), {
          version: '1.2.0',
          counter: 5,
          out: join(dev.root, 'v12.fbd'),
        });
        const events: AgentEvent[] = [];
        const r = await install(b, events);
        assert.ok(
          events.some((e) => e.id === 'install.seed-corrupt'),
          'the corrupt seed is reported',
        );
        assert.equal(r.target, 'rootfs.0');
        const disk = await readFile(dev.disk);
        const a = dev.partitions.rootA!;
        assert.ok(disk.subarray(a.offset, a.offset + v2.length).equals(v2));
      },
    );
  });

  describe('when the configuration points a target at the booted system', () => {
    it('refuses the overlapping slot before anything is written', sfdisk, async () => {
      const cfg = await readFile(dev.configPath, 'utf8');
      await copyFile(dev.configPath, `${dev.configPath}.bak`);
      await dev.boot('A');
      // Slot B's region now overlaps slot A (booted): a misconfiguration that must not cost the device.
      const b = dev.partitions.rootB!;
      const a = dev.partitions.rootA!;
      await writeFile(
        dev.configPath,
        cfg.replace(
          `offset = ${b.offset}\nsize = ${b.size}`,
          `offset = ${a.offset + 4096}\nsize = ${b.size - 4096}`,
        ),
      );
      assert.notEqual(await readFile(dev.configPath, 'utf8'), cfg);
      const bundle = await dev.bundle(join(dev.root, 'v1.img'), {
        version: '1.3.0',
        counter: 6,
        out: join(dev.root, 'v13.fbd'),
      });
      await refused('CONFIG_INVALID', () => install(bundle));
      await copyFile(`${dev.configPath}.bak`, dev.configPath);
    });
  });
});
