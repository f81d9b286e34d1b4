// The device build: the `ferry` CLI and the agent as a few plain JavaScript files, what a device
// image carries instead of the workspace (sources, types, node_modules).
//   node scripts/build-device.ts [OUTDIR]        (default dist/device; npm run build:device)
// OUTDIR gets ferry.mjs (the CLI), compute-worker.mjs (the install's worker threads), the chunk
// they share, and a `ferry` launcher. Node's built-in modules stay imports; the fleet server and
// Vite are left out (a device runs no server: `ferry server` there fails to load it).
// One file instead of several hundred modules is what makes a start cheap on a slow CPU: under
// QEMU TCG, `ferry status` took 13.8 s from the source tree and 3.0 s from this build
// (docs/architecture.md#the-device-build).
import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { rolldown, type Plugin } from 'rolldown';

const root = join(import.meta.dirname, '..');
const out = resolve(process.argv[2] ?? join(root, 'dist', 'device'));

// compute-pool.ts names its worker by source path; in the build the worker is its own entry.
const workerEntry: Plugin = {
  name: 'ferry-worker-entry',
  transform(code, id) {
    if (!id.endsWith('/compute-pool.ts')) return null;
    const next = code.replace("new URL('./compute-worker.ts'", "new URL('./compute-worker.mjs'");
    if (next === code) throw new Error('compute-pool.ts no longer names ./compute-worker.ts');
    return next;
  },
};

const bundle = await rolldown({
  input: {
    ferry: join(root, 'packages/cli/src/main.ts'),
    'compute-worker': join(root, 'packages/agent/src/compute-worker.ts'),
  },
  platform: 'node',
  external: [/^node:/, '@ferry/server', 'vite'],
  plugins: [workerEntry],
  logLevel: 'warn',
});
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await bundle.write({
  dir: out,
  format: 'esm',
  entryFileNames: '[name].mjs',
  chunkFileNames: 'ferry-[name]-[hash].mjs',
});
await bundle.close();
writeFileSync(
  join(out, 'ferry'),
  [
    '#!/bin/sh',
    '# Ferry on Node.js 24. NODE_COMPILE_CACHE keeps V8 code between starts (set it to a writable',
    '# directory on the data partition); FERRY_NODE names another node binary.',
    'here=$(dirname "$(readlink -f "$0")")',
    'exec "${FERRY_NODE:-node}" "$here/ferry.mjs" "$@"',
    '',
  ].join('\n'),
);
chmodSync(join(out, 'ferry'), 0o755);
console.log(`device build: ${out}`);
