// Runs every test layer this machine supports with node's test runner and ends with
// one line "N passed, N failed, N skipped".
// Usage: node scripts/test.mjs [PATH_FILTER...]   e.g. node scripts/test.mjs packages/core
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = join(import.meta.dirname, '..');
const filters = process.argv.slice(2);

function* walk(dir) {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name === 'dist' || name.startsWith('.')) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) yield* walk(p);
    else if (/\.test\.(ts|mjs)$/.test(name)) yield relative(root, p);
  }
}

const files = [...walk(join(root, 'packages')), ...walk(join(root, 'scripts'))]
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
  .sort();
if (files.length === 0) {
  console.error('no test files match');
  process.exit(1);
}
const args = [
  '--test',
  `--test-concurrency=${process.env.FERRY_TEST_CONCURRENCY ?? 2}`,
  '--test-timeout=1800000',
  '--test-reporter=spec',
  '--test-reporter-destination=stdout',
  `--test-reporter=${join(import.meta.dirname, 'summary-reporter.mjs')}`,
  '--test-reporter-destination=stdout',
  ...files,
];
const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
