import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { canonicalBytes } from './canonical-json.ts';
import { FerryError, isFerryError } from './errors.ts';
import {
  MANIFEST_LIMITS,
  parseManifest,
  serializeManifest,
  validateManifest,
  type Manifest,
} from './manifest.ts';

const H = (c: string): string => c.repeat(64);

function sample(): Manifest {
  return {
    format: 1,
    compatible: 'acme-widget-v2',
    version: '1.4.0-rc.1+build.7',
    releaseCounter: 42,
    created: '2026-11-22T10:00:00Z',
    description: 'Autumn release',
    images: {
      rootfs: {
        type: 'squashfs',
        size: 104857600,
        sha256: H('a'),
        chunkIndex: { sha256: H('b'), size: 81920, chunks: 1600 },
        verity: {
          format: 1,
          hashAlgorithm: 'sha256',
          dataBlockSize: 4096,
          hashBlockSize: 4096,
          dataBlocks: 25600,
          rootHash: H('c'),
          salt: 'd'.repeat(64),
          treeSize: 208896,
        },
      },
    },
  };
}

/** Sets `value` at a dotted path in a fresh sample; undefined deletes the field. */
function mutate(path: string, value: unknown): unknown {
  const m = sample() as unknown as Record<string, unknown>;
  const keys = path.split('.');
  let o = m;
  for (const k of keys.slice(0, -1)) o = o[k] as Record<string, unknown>;
  const last = keys[keys.length - 1]!;
  if (value === undefined) delete o[last];
  else o[last] = value;
  return m;
}

const schemaError = (path: string) => (e: unknown) =>
  isFerryError(e, 'MANIFEST_SCHEMA') && e.message.startsWith(`${path}:`);

describe('validateManifest', () => {
  describe('when the manifest is valid', () => {
    it('returns the same object', () => {
      const m = sample();
      assert.equal(validateManifest(m), m);
    });
    it('accepts every image type, no description, an empty salt and fractional seconds', () => {
      for (const type of ['squashfs', 'erofs', 'raw', 'tar']) {
        const m = mutate('images.rootfs.type', type) as Manifest;
        delete m.description;
        m.images.rootfs!.verity.salt = '';
        m.created = '2024-02-29T23:59:59.123456Z';
        assert.equal(validateManifest(m), m);
      }
    });
  });

  describe('when a field is wrong', () => {
    const cases: [string, unknown][] = [
      ['compatible', undefined],
      ['compatible', ''],
      ['compatible', 'has space'],
      ['compatible', 'x'.repeat(129)],
      ['version', '1.0'],
      ['version', '01.0.0'],
      ['version', 'v1.0.0'],
      ['version', 100],
      ['releaseCounter', -1],
      ['releaseCounter', 1.5],
      ['releaseCounter', 2 ** 53],
      ['releaseCounter', '1'],
      ['created', '2026-11-22T10:00:00+01:00'],
      ['created', '2026-11-22 10:00:00Z'],
      ['created', '2026-02-30T10:00:00Z'],
      ['created', '2026-11-22T24:00:00Z'],
      ['created', 1700000000],
      ['description', 7],
      ['description', 'x'.repeat(4097)],
      ['images', undefined],
      ['images', {}],
      ['images', []],
      ['images.rootfs', 'x'],
      ['images.rootfs.type', 'ext4'],
      ['images.rootfs.size', -1],
      ['images.rootfs.sha256', H('A')],
      ['images.rootfs.sha256', 'ab'],
      ['images.rootfs.chunkIndex', undefined],
      ['images.rootfs.chunkIndex.sha256', H('g')],
      ['images.rootfs.chunkIndex.size', '1'],
      ['images.rootfs.chunkIndex.chunks', null],
      ['images.rootfs.verity', []],
      ['images.rootfs.verity.format', 2],
      ['images.rootfs.verity.hashAlgorithm', 'sha1'],
      ['images.rootfs.verity.dataBlockSize', 512],
      ['images.rootfs.verity.hashBlockSize', 1024],
      ['images.rootfs.verity.dataBlocks', -4],
      ['images.rootfs.verity.rootHash', H('c').slice(1)],
      ['images.rootfs.verity.salt', 'abc'],
      ['images.rootfs.verity.salt', 'aa'.repeat(257)],
      ['images.rootfs.verity.treeSize', undefined],
    ];
    for (const [path, value] of cases)
      it(`names ${path} in MANIFEST_SCHEMA for ${JSON.stringify(value)?.slice(0, 30)}`, () =>
        assert.throws(() => validateManifest(mutate(path, value)), schemaError(path)));
    it('refuses a bad slot class name', () => {
      for (const name of ['Rootfs', '1st', 'a'.repeat(33), 'has space'])
        assert.throws(
          () => validateManifest(mutate('images', { [name]: sample().images.rootfs })),
          (e) => isFerryError(e, 'MANIFEST_SCHEMA'),
        );
    });
    it('refuses a non-object manifest', () => {
      for (const v of [null, [], 'x', 1])
        assert.throws(
          () => validateManifest(v),
          (e) => isFerryError(e, 'MANIFEST_SCHEMA'),
        );
    });
    it('refuses a missing format with MANIFEST_SCHEMA', () =>
      assert.throws(() => validateManifest(mutate('format', undefined)), schemaError('format')));
  });

  describe('when an image carries a tree listing digest', () => {
    const withTree = (tree: unknown): Manifest => {
      const m = sample();
      (m.images.rootfs as Record<string, unknown>).tree = tree;
      return m;
    };
    it('accepts a well-formed tree and keeps it', () => {
      const m = withTree({ sha256: H('e'), size: 1_070_000, entries: 6676 });
      assert.deepEqual(validateManifest(m).images.rootfs!.tree, {
        sha256: H('e'),
        size: 1_070_000,
        entries: 6676,
      });
    });
    const bad: [string, unknown][] = [
      ['', 'x'],
      ['', null],
      ['.sha256', H('E')],
      ['.sha256', undefined],
      ['.size', -1],
      ['.size', '10'],
      ['.entries', 1.5],
      ['.entries', undefined],
    ];
    for (const [sub, value] of bad)
      it(`names images.rootfs.tree${sub} in MANIFEST_SCHEMA for ${JSON.stringify(value)}`, () => {
        const tree: Record<string, unknown> = { sha256: H('e'), size: 10, entries: 1 };
        const t = sub === '' ? value : tree;
        if (sub !== '') {
          if (value === undefined) delete tree[sub.slice(1)];
          else tree[sub.slice(1)] = value;
        }
        assert.throws(() => validateManifest(withTree(t)), schemaError(`images.rootfs.tree${sub}`));
      });
  });

  describe('when the format version is not 1', () => {
    for (const v of [2, 0, '1', null])
      it(`throws MANIFEST_FORMAT_VERSION for ${JSON.stringify(v)}`, () =>
        assert.throws(
          () => validateManifest(mutate('format', v)),
          (e) => isFerryError(e, 'MANIFEST_FORMAT_VERSION'),
        ));
  });
});

describe('parseManifest', () => {
  describe('when the bytes are a canonical valid manifest', () => {
    it('round-trips byte-identically, unknown fields included at every level', () => {
      const m = sample();
      m.future = { nested: [1, 'two'] };
      m.images.rootfs!.partitionHint = 'p2';
      (m.images.rootfs!.verity as unknown as Record<string, unknown>).hashOffset = 0;
      const bytes = serializeManifest(m);
      const back = parseManifest(bytes);
      assert.deepEqual(back, m);
      assert.deepEqual(serializeManifest(back), bytes);
    });
  });
  describe('when the bytes are not canonical', () => {
    it('throws JSON_NOT_CANONICAL', () => {
      const pretty = Buffer.from(JSON.stringify(sample(), null, 2));
      assert.throws(
        () => parseManifest(pretty),
        (e) => isFerryError(e, 'JSON_NOT_CANONICAL'),
      );
    });
  });
  describe('when the bytes exceed the limits', () => {
    it('throws MANIFEST_TOO_LARGE and MANIFEST_TOO_DEEP', () => {
      const big = mutate('pad', 'x'.repeat(MANIFEST_LIMITS.maxBytes));
      assert.throws(
        () => parseManifest(canonicalBytes(big)),
        (e) => isFerryError(e, 'MANIFEST_TOO_LARGE'),
      );
      let deep: unknown = 1;
      for (let i = 0; i < MANIFEST_LIMITS.maxDepth; i++) deep = [deep];
      assert.throws(
        () => parseManifest(canonicalBytes(mutate('deep', deep))),
        (e) => isFerryError(e, 'MANIFEST_TOO_DEEP'),
      );
      assert.throws(
        () => serializeManifest(mutate('deep', deep) as Manifest),
        (e) => isFerryError(e, 'MANIFEST_TOO_DEEP'),
      );
    });
  });

  describe('when given arbitrary input (property)', () => {
    const CODES = new Set([
      'JSON_MALFORMED',
      'JSON_NOT_CANONICAL',
      'MANIFEST_TOO_LARGE',
      'MANIFEST_TOO_DEEP',
      'MANIFEST_SCHEMA',
      'MANIFEST_FORMAT_VERSION',
    ]);
    const onlyDocumented = (input: Uint8Array): void => {
      try {
        parseManifest(input);
      } catch (e) {
        if (!(e instanceof FerryError) || !CODES.has(e.code)) throw e;
      }
    };
    it('returns or throws a documented code for any byte string', () => {
      fc.assert(fc.property(fc.uint8Array({ maxLength: 512 }), onlyDocumented), { numRuns: 2000 });
    });
    it('returns or throws a documented code for any JSON value', () => {
      fc.assert(
        fc.property(fc.jsonValue(), (v) => onlyDocumented(canonicalBytes(v))),
        { numRuns: 1000 },
      );
      fc.assert(
        fc.property(fc.jsonValue(), (v) => onlyDocumented(Buffer.from(JSON.stringify(v) ?? ''))),
      );
    });
    it('returns or throws a documented code for mutated manifests', () => {
      const base = canonicalBytes(sample());
      const arb = fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 }));
      fc.assert(fc.property(arb, ([i, b]) => onlyDocumented(Buffer.from(base).fill(b, i, i + 1))));
    });
    it('round-trips valid manifests byte-identically', () => {
      const hex = (n: number) =>
        fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: n, maxLength: n });
      const image = fc.record({
        type: fc.constantFrom('squashfs', 'erofs', 'raw', 'tar'),
        size: fc.maxSafeNat(),
        sha256: hex(64),
        chunkIndex: fc.record({ sha256: hex(64), size: fc.maxSafeNat(), chunks: fc.maxSafeNat() }),
        verity: fc.record({
          format: fc.constant(1),
          hashAlgorithm: fc.constant('sha256'),
          dataBlockSize: fc.constant(4096),
          hashBlockSize: fc.constant(4096),
          dataBlocks: fc.maxSafeNat(),
          rootHash: hex(64),
          salt: fc.nat(256).chain((n) => hex(2 * n)),
          treeSize: fc.maxSafeNat(),
        }),
        extra: fc.jsonValue({ maxDepth: 3 }),
      });
      const manifest = fc.record({
        format: fc.constant(1),
        compatible: fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,20}$/),
        version: fc.tuple(fc.nat(), fc.nat(), fc.nat()).map((v) => v.join('.')),
        releaseCounter: fc.maxSafeNat(),
        created: fc
          .date({ min: new Date('1970-01-01'), max: new Date('9999-12-31'), noInvalidDate: true })
          .map((d) => d.toISOString().replace('.000Z', 'Z')),
        description: fc.string({ maxLength: 100 }).filter((s) => s.isWellFormed()),
        images: fc.dictionary(fc.stringMatching(/^[a-z][a-z0-9_-]{0,31}$/), image, {
          minKeys: 1,
          maxKeys: 4,
        }),
        unknownTop: fc.jsonValue({ maxDepth: 4 }),
      });
      fc.assert(
        fc.property(manifest, (m) => {
          const bytes = serializeManifest(m);
          assert.deepEqual(serializeManifest(parseManifest(bytes)), bytes);
        }),
      );
    });
  });
});
