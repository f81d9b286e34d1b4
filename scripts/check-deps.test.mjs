import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkDeps } from './check-deps.mjs';

function tree(files) {
  const root = mkdtempSync(join(tmpdir(), 'ferry-deps-'));
  for (const [p, text] of Object.entries(files)) {
    mkdirSync(join(root, p, '..'), { recursive: true });
    writeFileSync(join(root, p), text);
  }
  return root;
}

describe('check-deps', () => {
  it('accepts imports along the graph', () => {
    const root = tree({
      'packages/core/src/a.ts': "import { x } from './b.ts';\n",
      'packages/cli/src/main.ts': "import { x } from '@ferry/core';\n",
      'packages/core/src/a.test.ts': "import { haveRoot } from '@ferry/testing';\n",
    });
    assert.deepEqual(checkDeps(root), []);
    rmSync(root, { recursive: true });
  });
  it('refuses a wrong-way import', () => {
    const root = tree({ 'packages/core/src/a.ts': "import { agent } from '@ferry/cli';\n" });
    const problems = checkDeps(root);
    assert.equal(problems.length, 1);
    assert.match(problems[0], /core must not import cli/);
    rmSync(root, { recursive: true });
  });
  it('refuses a relative import into another package', () => {
    const root = tree({ 'packages/core/src/a.ts': "export * from '../../builder/src/x.ts';\n" });
    assert.match(checkDeps(root)[0], /leaves the package/);
    rmSync(root, { recursive: true });
  });
  it('passes on this repository', () => {
    assert.deepEqual(checkDeps(join(import.meta.dirname, '..')), []);
  });
});
