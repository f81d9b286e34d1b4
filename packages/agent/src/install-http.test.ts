import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { HttpRangeSource } from '@ferry/core';
import {
  imageLikeBytes,
  makeDevice,
  needs,
  startNginx,
  type DeviceFixture,
  type Nginx,
} from '@ferry/testing';
import { Agent } from './agent.ts';
import type { FileBootloader } from './bootloader-file.ts';

const caps = needs('sfdisk', 'nginx', 'root');
let dev: DeviceFixture;
let nginx: Nginx;
let v2: Buffer;
let v2Bundle: string;

before(async () => {
  if (caps.skip) return;
  dev = await makeDevice({ slotMiB: 8 });
  const v1 = imageLikeBytes(4 * 1024 * 1024, 51);
  v2 = Buffer.from(v1);
  imageLikeBytes(150 * 1024, 52).copy(v2, 3 * 1024 * 1024);
  await writeFile(join(dev.root, 'v1.img'), v1);
  await writeFile(join(dev.root, 'v2.img'), v2);
  const v1Bundle = await dev.bundle(join(dev.root, 'v1.img'), { version: '1.0.0', counter: 1 });
  v2Bundle = await dev.bundle(join(dev.root, 'v2.img'), { version: '1.1.0', counter: 2 });
  await (await Agent.open({ root: dev.root })).install(v1Bundle);
  assert.equal(
    await ((await Agent.open({ root: dev.root })).bootloader as FileBootloader).boot(),
    'B',
  );
  await dev.boot('B');
  nginx = await startNginx(dev.root);
});
after(async () => {
  await nginx?.stop();
  await dev?.cleanup();
});

describe('install from a URL', () => {
  describe('when the bundle is on nginx and the other slot holds the previous release', () => {
    it(
      'fetches only the missing chunks with range requests and installs a verified image',
      caps,
      async () => {
        const src = new HttpRangeSource(`${nginx.url}/${basename(v2Bundle)}`);
        const r = await (await Agent.open({ root: dev.root })).install(src);
        const total = (await stat(v2Bundle)).size;
        assert.equal(r.target, 'rootfs.0');
        assert.ok(
          r.bundleBytesRead < total * 0.2,
          `read ${r.bundleBytesRead} of ${total} bundle bytes`,
        );
        assert.ok(r.seededBytes > v2.length * 0.8, `seeded ${r.seededBytes}`);
        const log = (await nginx.accessLog()).filter((l) => l.includes(basename(v2Bundle)));
        assert.ok(
          log.length > 1 && log.every((l) => / 206 /.test(l)),
          'every request is a range request',
        );
        const disk = await readFile(dev.disk);
        const a = dev.partitions.rootA!;
        assert.ok(disk.subarray(a.offset, a.offset + v2.length).equals(v2));
      },
    );
  });
});
