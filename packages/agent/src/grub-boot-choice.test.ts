import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { grubBootChoice } from './grub-boot-choice.ts';

const AB = ['A', 'B'];

describe('grubBootChoice', () => {
  describe('when scheme "left" finds B on trial first in ORDER', () => {
    it('boots B and saves B_LEFT one lower', () => {
      assert.deepEqual(grubBootChoice({ ORDER: 'B A', B_OK: '1', B_LEFT: '3' }, AB, 'left'), {
        bootname: 'B',
        saves: { B_LEFT: '2' },
        attemptsLeft: 2,
      });
    });
  });
  describe('when the first slot in ORDER is committed', () => {
    it('boots it and saves nothing', () => {
      assert.deepEqual(grubBootChoice({ ORDER: 'A B', A_OK: '1' }, AB, 'left'), {
        bootname: 'A',
        saves: {},
      });
    });
  });
  describe('when B has no attempts left or is marked bad', () => {
    it('falls through to A', () => {
      const cases: Array<Record<string, string>> = [
        { ORDER: 'B A', B_LEFT: '0' },
        { ORDER: 'B A', B_OK: '0', B_LEFT: '2' },
        { ORDER: 'B A', B_LEFT: '10' },
      ];
      for (const vars of cases)
        assert.equal(grubBootChoice(vars, AB, 'left').bootname, 'A', JSON.stringify(vars));
    });
  });
  describe('when ORDER is unset', () => {
    it('walks the configured bootnames, as the script walks its default', () => {
      assert.equal(grubBootChoice({ A_LEFT: '0' }, AB, 'left').bootname, 'B');
    });
  });
  describe('when ORDER names a slot that is not configured', () => {
    it('skips it', () => {
      assert.equal(grubBootChoice({ ORDER: 'C B A' }, AB, 'left').bootname, 'B');
    });
  });
  describe('when no slot is bootable', () => {
    it('names none and saves nothing (the script would boot its last resort)', () => {
      assert.deepEqual(grubBootChoice({ ORDER: 'A B', A_OK: '0', B_LEFT: '0' }, AB, 'left'), {
        saves: {},
      });
    });
  });
  describe('when the scheme is rauc', () => {
    it('marks each slot it walks past tried and boots the first untried good one', () => {
      assert.deepEqual(
        grubBootChoice({ ORDER: 'B A', A_OK: '1', A_TRY: '0', B_OK: '1', B_TRY: '1' }, AB, 'rauc'),
        { bootname: 'A', saves: { B_TRY: '1', A_TRY: '1' } },
      );
    });
    it("treats an unset _OK as 0, as RAUC's script does", () => {
      assert.equal(grubBootChoice({ ORDER: 'A B' }, AB, 'rauc').bootname, undefined);
    });
  });
});
