import { afterEach, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setImmediate as tick } from 'node:timers/promises';
import { isFerryError } from '@ferry/core';
import { tempDir } from '@ferry/testing';
import { freshState, indexPath, StateStore, type AgentState } from './state.ts';

const SHA = 'ab'.repeat(32);
const stateInvalid = (e: unknown) => isFerryError(e, 'STATE_INVALID');

describe('StateStore', () => {
  let dir = '';
  let cleanup = async () => {};
  let store: StateStore;
  beforeEach(async () => {
    ({ dir, cleanup } = await tempDir('ferry-state-'));
    store = new StateStore(join(dir, 'data'));
  });
  afterEach(() => cleanup());

  describe('when nothing was saved yet', () => {
    it('loads a fresh state and writes nothing', async () => {
      assert.deepEqual(await store.load(), freshState());
      assert.deepEqual(await readdir(dir), []);
    });
  });

  describe('when the state is updated', () => {
    it('writes state.json that a new store reads back', async () => {
      const written = await store.update((s) => {
        s.slots['rootfs.1'] = {
          status: 'installed',
          release: { compatible: 'acme', version: '1.2.0', releaseCounter: 4, manifestSha256: SHA },
          image: {
            class: 'rootfs',
            sha256: SHA,
            size: 4096,
            chunkIndexSha256: SHA,
            type: 'squashfs',
            hashOffset: 4096,
          },
          installedAt: '2025-01-01T00:00:00.000Z',
        };
        s.installCount++;
        s.pendingSlot = 'rootfs.1';
        s.lastInstall = {
          at: '2025-01-01T00:00:00.000Z',
          result: 'ok',
          release: '1.2.0',
          target: 'rootfs.1',
        };
      });
      const again = await new StateStore(join(dir, 'data')).load();
      assert.deepEqual(again, written);
      assert.equal(again.slots['rootfs.1']?.status, 'installed');
      assert.equal(again.installCount, 1);
    });

    it('serialises two concurrent updates so neither is lost', async () => {
      const bump = async (s: AgentState) => {
        const n = s.installCount;
        await tick();
        s.installCount = n + 1;
      };
      const other = new StateStore(join(dir, 'data'));
      await Promise.all([store.update(bump), other.update(bump), store.update(bump)]);
      assert.equal((await store.load()).installCount, 3);
    });

    it('writes nothing when the update function throws, and carries on after it', async () => {
      await store.update((s) => void (s.installCount = 1));
      await assert.rejects(
        store.update((s) => {
          s.installCount = 99;
          throw new Error('boom');
        }),
        /boom/,
      );
      await store.update((s) => void s.installCount++);
      assert.equal((await store.load()).installCount, 2);
    });

    it('refuses to write a state that does not match the format (INTERNAL)', async () => {
      await assert.rejects(
        store.update((s) => {
          (s.slots['rootfs.0'] as unknown as { status: string }) = { status: 'weird' };
        }),
        (e) => isFerryError(e, 'INTERNAL'),
      );
      assert.deepEqual(await store.load(), freshState());
    });

    it('keeps keys it does not know', async () => {
      await store.update(() => undefined);
      const obj = JSON.parse(await readFile(store.path, 'utf8')) as Record<string, unknown>;
      await writeFile(store.path, JSON.stringify({ ...obj, future: { x: 1 } }));
      await store.update((s) => void s.installCount++);
      const after = JSON.parse(await readFile(store.path, 'utf8')) as Record<string, unknown>;
      assert.deepEqual(after.future, { x: 1 });
    });
  });

  describe('when state.json is corrupt', () => {
    const cases: [string, string][] = [
      ['not JSON', '{"version": 1,'],
      ['an array', '[]'],
      ['an unknown version', JSON.stringify({ ...freshState(), version: 2 })],
      ['a negative counter', JSON.stringify({ ...freshState(), highWaterCounter: -1 })],
      [
        'a bad slot status',
        JSON.stringify({ ...freshState(), slots: { 'rootfs.0': { status: 'ok' } } }),
      ],
      [
        'a bad slot name',
        JSON.stringify({ ...freshState(), slots: { __proto__x: { status: 'empty' } } }),
      ],
      [
        'a bad digest',
        JSON.stringify({
          ...freshState(),
          slots: {
            'rootfs.0': {
              status: 'installed',
              release: { compatible: 'a', version: '1', releaseCounter: 1, manifestSha256: 'x' },
            },
          },
        }),
      ],
      ['a missing field', JSON.stringify({ version: 1, highWaterCounter: 0, slots: {} })],
    ];
    for (const [what, text] of cases)
      it(`refuses ${what} with STATE_INVALID and leaves the file alone`, async () => {
        await store.update(() => undefined);
        await writeFile(store.path, text);
        await assert.rejects(store.load(), stateInvalid);
        await assert.rejects(
          store.update(() => undefined),
          stateInvalid,
        );
        assert.equal(await readFile(store.path, 'utf8'), text);
      });

    it('refuses invalid UTF-8 and an oversized file', async () => {
      await store.update(() => undefined);
      await writeFile(store.path, Buffer.from([0x7b, 0xff, 0x7d]));
      await assert.rejects(store.load(), stateInvalid);
      await writeFile(store.path, Buffer.alloc(1024 * 1024 + 1, 0x20));
      await assert.rejects(store.load(), stateInvalid);
    });

    it('refuses a corrupt high-water file', async () => {
      await store.raiseHighWater(3);
      await writeFile(store.highWaterPath, 'three\n');
      await assert.rejects(store.load(), stateInvalid);
    });
  });

  describe('when the high-water mark is raised', () => {
    it('keeps the larger value and writes both copies', async () => {
      await store.raiseHighWater(7);
      await store.raiseHighWater(3);
      assert.equal((await store.load()).highWaterCounter, 7);
      assert.equal(await readFile(store.highWaterPath, 'utf8'), '7\n');
      assert.equal(
        (JSON.parse(await readFile(store.path, 'utf8')) as AgentState).highWaterCounter,
        7,
      );
    });

    it('is not lowered by an older state.json put back', async () => {
      await store.raiseHighWater(2);
      await copyFile(store.path, join(dir, 'old.json'));
      await store.raiseHighWater(9);
      await copyFile(join(dir, 'old.json'), store.path);
      assert.equal((await store.load()).highWaterCounter, 9);
      await store.update((s) => void s.installCount++);
      assert.equal(
        (JSON.parse(await readFile(store.path, 'utf8')) as AgentState).highWaterCounter,
        9,
      );
    });

    it('is not lowered when state.json is lost', async () => {
      await store.raiseHighWater(5);
      await rm(store.path);
      assert.equal((await store.load()).highWaterCounter, 5);
    });

    it('is not lowered by an update that sets it lower', async () => {
      await store.raiseHighWater(5);
      const s = await store.update((st) => void (st.highWaterCounter = 1));
      assert.equal(s.highWaterCounter, 5);
      assert.equal((await store.load()).highWaterCounter, 5);
    });

    it('repairs a missing high-water file from state.json', async () => {
      await store.raiseHighWater(4);
      await rm(store.highWaterPath);
      await store.update(() => undefined);
      assert.equal(await readFile(store.highWaterPath, 'utf8'), '4\n');
    });

    it('refuses a counter that is not a non-negative integer', async () => {
      for (const n of [-1, 1.5, Number.NaN])
        await assert.rejects(store.raiseHighWater(n), (e) => isFerryError(e, 'USAGE'));
    });
  });
});

describe('indexPath', () => {
  describe('when given a digest', () => {
    it('places the index under <dataDir>/indexes', () => {
      assert.equal(indexPath('/var/lib/ferry', SHA), `/var/lib/ferry/indexes/${SHA}.cidx`);
    });
    it('refuses anything but 64 lowercase hex digits', () => {
      for (const bad of ['../../etc/passwd', SHA.toUpperCase(), SHA.slice(1), `${SHA}/x`])
        assert.throws(
          () => indexPath('/d', bad),
          (e) => isFerryError(e, 'USAGE'),
        );
    });
  });
});
