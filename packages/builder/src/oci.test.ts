import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { isFerryError } from '@ferry/core';
import { verifyBlob } from './blob.ts';
import { makeDockerArchive, writeOciLayout, type OciFixture } from './fixtures/oci-fixture.ts';
import { makeTar } from './fixtures/tar-writer.ts';
import { detectInputKind, openBlobSource } from './image-input.ts';
import { parsePlatform, resolveDockerArchive, resolveOciLayout } from './oci.ts';

describe('resolveOciLayout', () => {
  let base = '';
  let fx: OciFixture;
  before(() => {
    base = mkdtempSync(join(tmpdir(), 'ferry-oci-'));
    fx = writeOciLayout(join(base, 'layout'));
    mkdirSync(join(base, 'scratch'));
  });
  after(() => rmSync(base, { recursive: true, force: true }));
  const resolve = async (platform: string) =>
    resolveOciLayout(await openBlobSource(fx.dir, join(base, 'scratch')), parsePlatform(platform));

  describe('when the index nests an index with two platforms', () => {
    it('picks the amd64 manifest and lists its layers in order', async () => {
      const layers = await resolve('linux/amd64');
      assert.deepEqual(
        layers.map((l) => l.digest),
        fx.layerDigests,
      );
      assert.deepEqual(
        layers.map((l) => l.compression),
        ['none', 'gzip', 'zstd'],
      );
    });
    it('picks the arm64 manifest when asked', async () => {
      const layers = await resolve('linux/arm64/v8');
      assert.equal(layers.length, 1);
      assert.ok(!fx.layerDigests.includes(layers[0]!.digest!));
    });
  });
  describe('when no manifest matches the platform', () => {
    it('throws IMAGE_INPUT_INVALID', async () => {
      await assert.rejects(resolve('linux/s390x'), (e) => isFerryError(e, 'IMAGE_INPUT_INVALID'));
    });
  });
  describe('when a layer blob is corrupted', () => {
    it('fails verification with IMAGE_INPUT_INVALID', async () => {
      const layers = await resolve('linux/amd64');
      const l = layers[1]!;
      const bytes = readFileSync(l.blob.path);
      bytes.writeUInt8(bytes.readUInt8(20) ^ 1, 20);
      writeFileSync(join(base, 'corrupt'), bytes);
      await assert.rejects(
        verifyBlob({ ...l.blob, path: join(base, 'corrupt') }, l.digest!, l.size),
        (e) => isFerryError(e, 'IMAGE_INPUT_INVALID'),
      );
      await verifyBlob(l.blob, l.digest!, l.size);
    });
  });
  describe('when a manifest blob is missing', () => {
    it('throws IMAGE_INPUT_INVALID', async () => {
      const dir = join(base, 'broken');
      writeOciLayout(dir);
      const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as {
        manifests: { digest: string }[];
      };
      rmSync(join(dir, 'blobs', 'sha256', index.manifests[0]!.digest.slice(7)));
      const src = await openBlobSource(dir, join(base, 'scratch'));
      await assert.rejects(resolveOciLayout(src, parsePlatform('linux/amd64')), (e) =>
        isFerryError(e, 'IMAGE_INPUT_INVALID'),
      );
    });
  });
  describe('when a descriptor digest tries to leave blobs/', () => {
    it('throws IMAGE_INPUT_INVALID', async () => {
      const dir = join(base, 'evil');
      writeOciLayout(dir);
      const evil = {
        schemaVersion: 2,
        manifests: [
          {
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            digest: 'sha256:../../../etc/passwd',
            size: 1,
          },
        ],
      };
      writeFileSync(join(dir, 'index.json'), JSON.stringify(evil));
      const src = await openBlobSource(dir, join(base, 'scratch'));
      await assert.rejects(resolveOciLayout(src, parsePlatform('linux/amd64')), (e) =>
        isFerryError(e, 'IMAGE_INPUT_INVALID'),
      );
    });
  });
});

describe('resolveDockerArchive', () => {
  let base = '';
  before(() => {
    base = mkdtempSync(join(tmpdir(), 'ferry-docker-'));
    writeFileSync(join(base, 'image.tar'), makeDockerArchive());
    writeFileSync(join(base, 'image.tar.gz'), gzipSync(makeDockerArchive()));
  });
  after(() => rmSync(base, { recursive: true, force: true }));
  for (const name of ['image.tar', 'image.tar.gz'])
    describe(`when reading ${name}`, () => {
      it('lists the three layers, verifying digest-named ones', async () => {
        const scratch = mkdtempSync(join(base, 'scratch-'));
        const src = await openBlobSource(join(base, name), scratch);
        const layers = await resolveDockerArchive(src, parsePlatform('linux/amd64'));
        assert.equal(layers.length, 3);
        assert.equal(layers[0]!.digest, undefined);
        for (const l of layers.slice(1)) await verifyBlob(l.blob, l.digest!);
      });
    });
});

describe('detectInputKind', () => {
  let base = '';
  before(() => {
    base = mkdtempSync(join(tmpdir(), 'ferry-detect-'));
    mkdirSync(join(base, 'dir'));
    writeOciLayout(join(base, 'layout'));
    writeFileSync(
      join(base, 'rootfs.tar.gz'),
      gzipSync(
        makeTar([
          { name: './', type: 'dir' },
          { name: './etc/hostname', data: 'x' },
        ]),
      ),
    );
    writeFileSync(join(base, 'docker.tar'), makeDockerArchive());
    writeFileSync(join(base, 'junk'), Buffer.alloc(2048, 7));
    writeFileSync(join(base, 'empty'), '');
  });
  after(() => rmSync(base, { recursive: true, force: true }));
  const cases: [string, string][] = [
    ['dir', 'directory'],
    ['layout', 'oci-layout'],
    ['rootfs.tar.gz', 'tar'],
    ['docker.tar', 'docker-archive'],
  ];
  for (const [name, kind] of cases)
    describe(`when given ${name}`, () => {
      it(`says ${kind}`, async () => assert.equal(await detectInputKind(join(base, name)), kind));
    });
  for (const name of ['junk', 'empty', 'missing'])
    describe(`when given ${name}`, () => {
      it('throws IMAGE_INPUT_INVALID', async () => {
        await assert.rejects(detectInputKind(join(base, name)), (e) =>
          isFerryError(e, 'IMAGE_INPUT_INVALID'),
        );
      });
    });
});
