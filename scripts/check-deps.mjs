// Fails when a package imports against the one-way dependency graph (e.g. core -> agent).
// Usage: node scripts/check-deps.mjs [ROOT]   (ROOT defaults to the repository root)
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';

/** Allowed imports of each package's non-test sources; test files may also import @ferry/testing. */
export const GRAPH = {
  protocol: [],
  core: [],
  builder: ['core'],
  repo: ['core'],
  agent: ['core', 'protocol'],
  server: ['core', 'protocol'],
  web: ['protocol'],
  testing: ['core', 'builder', 'agent', 'server', 'protocol'],
  cli: ['core', 'builder', 'repo', 'agent', 'server', 'protocol'],
  vm: ['core', 'builder', 'repo', 'agent', 'server', 'testing'],
};

/** What test files (and `*-harness.ts` modules) may import beyond their package's graph and @ferry/testing. */
export const TEST_EXTRA = {
  // The dashboard's browser tests start the real fleet server.
  web: ['server'],
};

function* files(dir) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (name === 'node_modules' || name === 'dist') continue;
    if (statSync(p).isDirectory()) yield* files(p);
    else if (/\.(ts|tsx|mts|js|mjs)$/.test(name)) yield p;
  }
}

export function checkDeps(root) {
  const problems = [];
  const pkgsDir = join(root, 'packages');
  for (const pkg of readdirSync(pkgsDir)) {
    const src = join(pkgsDir, pkg, 'src');
    const allowed = GRAPH[pkg];
    if (!allowed) {
      problems.push(`packages/${pkg}: not in the dependency graph (scripts/check-deps.mjs)`);
      continue;
    }
    let list;
    try {
      list = [...files(src)];
    } catch {
      continue;
    }
    for (const file of list) {
      const text = readFileSync(file, 'utf8');
      // Test files, and the harnesses only test files import (`browser-harness.ts`).
      const isTest = /\.test\.[a-z]+$|-harness\.ts$/.test(file);
      const re =
        /(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;
      for (const m of text.matchAll(re)) {
        const spec = m[1] ?? m[2];
        const where = relative(root, file);
        const scoped = /^@ferry\/([^/]+)/.exec(spec);
        if (scoped) {
          const dep = scoped[1];
          if (dep === pkg) problems.push(`${where}: imports its own package by name ('${spec}')`);
          else if (
            !allowed.includes(dep) &&
            !(isTest && (dep === 'testing' || (TEST_EXTRA[pkg] ?? []).includes(dep)))
          )
            problems.push(`${where}: ${pkg} must not import ${dep} ('${spec}')`);
        } else if (spec.startsWith('.')) {
          const target = resolve(join(file, '..'), spec);
          if (!target.startsWith(join(pkgsDir, pkg) + sep))
            problems.push(`${where}: relative import leaves the package ('${spec}')`);
        }
      }
    }
  }
  return problems;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const root = resolve(process.argv[2] ?? join(import.meta.dirname, '..'));
  const problems = checkDeps(root);
  for (const p of problems) console.error(`dependency graph: ${p}`);
  process.exit(problems.length ? 1 : 0);
}
