import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { open, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isFerryError } from '@ferry/core';
import { Writeback } from './writeback.ts';

/** A flush the test finishes by hand, counting how many were asked for. */
function manualSync() {
  const calls: Array<{ done: () => void; fail: (e: Error) => void }> = [];
  const sync = () =>
    new Promise<void>((done, fail) => {
      calls.push({ done, fail });
    });
  return { calls, sync };
}

/** Lets pending promise callbacks run. */
const settle = () => new Promise((r) => setImmediate(r));

describe('Writeback', () => {
  describe('when fewer bytes than a step are written', () => {
    it('flushes nothing', async () => {
      const s = manualSync();
      const w = new Writeback({ sync: s.sync, slotName: 'b', step: 100 });
      await w.wrote(60);
      await w.wrote(39);
      assert.equal(s.calls.length, 0);
      await w.drain();
    });
  });

  describe('when a step is written', () => {
    it('starts one flush and lets the writes go on while it runs', async () => {
      const s = manualSync();
      const w = new Writeback({ sync: s.sync, slotName: 'b', step: 100, ahead: 400 });
      await w.wrote(100);
      assert.equal(s.calls.length, 1);
      // The flush has not finished, yet these writes return at once, and start no second flush.
      await w.wrote(150);
      await w.wrote(150);
      assert.equal(s.calls.length, 1);
      s.calls[0]!.done();
      await settle();
      await w.wrote(1);
      assert.equal(s.calls.length, 2, 'the 301 bytes written meanwhile start the next flush');
      s.calls[1]!.done();
      await w.drain();
      assert.equal(w.flushes, 2);
    });
  });

  describe('when the writer runs `ahead` bytes past the flush in flight', () => {
    it('waits for that flush to finish', async () => {
      const s = manualSync();
      const w = new Writeback({ sync: s.sync, slotName: 'b', step: 100, ahead: 200 });
      await w.wrote(100);
      let returned = false;
      const blocked = w.wrote(200).then(() => {
        returned = true;
      });
      await settle();
      assert.equal(returned, false);
      s.calls[0]!.done();
      await blocked;
      assert.equal(returned, true);
      assert.equal(s.calls.length, 2, 'and then flushes what it wrote');
      s.calls[1]!.done();
      await w.drain();
    });
  });

  describe('when a flush fails', () => {
    it('fails the next write and the drain with IO, naming the slot', async () => {
      const s = manualSync();
      const w = new Writeback({ sync: s.sync, slotName: 'rootfs.1', step: 10 });
      await w.wrote(10);
      s.calls[0]!.fail(new Error('EIO: i/o error'));
      await settle();
      const io = (e: unknown) => isFerryError(e, 'IO') && /rootfs\.1.*EIO/.test(e.message);
      await assert.rejects(w.wrote(1), io);
      await assert.rejects(w.drain(), io);
    });
  });

  describe('when it drives fdatasync of a real file', () => {
    it('leaves the file with every byte written', async () => {
      const dir = await mkdtemp(join(tmpdir(), 'ferry-writeback-'));
      try {
        const fh = await open(join(dir, 'slot'), 'w+');
        const w = new Writeback({ sync: () => fh.datasync(), slotName: 'b', step: 1 << 16 });
        const piece = Buffer.alloc(1 << 15);
        for (let i = 0; i < 64; i++) {
          await fh.write(piece.fill(i), 0, piece.length, i * piece.length);
          await w.wrote(piece.length);
        }
        await w.drain();
        await fh.close();
        assert.ok(w.flushes >= 8, `${w.flushes} flushes for 2 MiB in 64 KiB steps`);
        const back = await readFile(join(dir, 'slot'));
        assert.equal(back.length, 64 << 15);
        for (let i = 0; i < 64; i++) assert.equal(back[i * piece.length + 7], i);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  });
});
