import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ERROR_CODES, FerryError, isFerryError, withContext } from './errors.ts';

describe('FerryError', () => {
  describe('when context is added', () => {
    it('keeps the code and prefixes the message', () => {
      const e = new FerryError('BUNDLE_TRUNCATED', 'ends at 10 of 20 bytes').withContext(
        'reading x.fbd',
      );
      assert.equal(e.code, 'BUNDLE_TRUNCATED');
      assert.equal(e.message, 'reading x.fbd: ends at 10 of 20 bytes');
    });
  });
  describe('when wrapping a system error', () => {
    it('maps it to IO', () => {
      const sys = Object.assign(new Error('ENOENT: no such file'), {
        code: 'ENOENT',
        syscall: 'open',
      });
      assert.ok(isFerryError(withContext('opening key', sys), 'IO'));
    });
  });
  it('has a description for every code', () => {
    for (const [code, text] of Object.entries(ERROR_CODES)) {
      assert.match(code, /^[A-Z][A-Z0-9_]+$/);
      assert.ok(text.length > 10);
    }
  });
});

describe('docs/errors.md', () => {
  it('lists every code (regenerate with npm run docs:errors)', async () => {
    const { readFile } = await import('node:fs/promises');
    const doc = await readFile(new URL('../../../docs/errors.md', import.meta.url), 'utf8');
    const { errorsReference } = await import('./errors.ts');
    assert.equal(doc, errorsReference());
  });
});
