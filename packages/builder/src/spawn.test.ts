import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isFerryError } from '@ferry/core';
import { lastLine, runTool } from './spawn.ts';

describe('runTool', () => {
  describe('when the tool exits 0', () => {
    it('resolves with its output', async () => {
      const r = await runTool('sh', ['-c', 'echo out; echo err >&2']);
      assert.equal(r.stdout, 'out\n');
      assert.equal(r.stderr, 'err\n');
    });
  });
  describe('when the tool is not installed', () => {
    it('rejects with TOOL_MISSING', async () => {
      await assert.rejects(runTool('ferry-no-such-tool', []), (e) =>
        isFerryError(e, 'TOOL_MISSING'),
      );
    });
  });
  describe('when the tool exits non-zero', () => {
    it('rejects with TOOL_FAILED', async () => {
      await assert.rejects(runTool('sh', ['-c', 'echo first >&2; echo boom >&2; exit 3']), (e) =>
        isFerryError(e, 'TOOL_FAILED'),
      );
    });
  });
});

describe('lastLine', () => {
  describe('when output ends with blank lines', () => {
    it('returns the last non-empty line', () => {
      assert.equal(lastLine('a\nFATAL ERROR: no space\n\n  \n'), 'FATAL ERROR: no space');
    });
  });
});
