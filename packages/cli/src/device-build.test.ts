import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { accessSync, constants, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { needs, tempDir } from '@ferry/testing';

const REPO = join(import.meta.dirname, '..', '..', '..');

/** Runs the device build's launcher with this Node.js; returns its exit status and output. */
function ferry(out: string, args: string[], cwd: string) {
  const r = spawnSync(join(out, 'ferry'), args, {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, FERRY_NODE: process.execPath },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Every import specifier in a built file that is neither relative nor a Node.js built-in. */
function foreignImports(code: string): string[] {
  const patterns = [
    /^\s*(?:import|export)\s[^;]*?\bfrom\s*["']([^"']+)["']/gm, // static import/export ... from
    /^\s*import\s*["']([^"']+)["']/gm, // bare import
    /\bimport\(\s*["']([^"']+)["']\s*\)/g, // dynamic import()
  ];
  const specs = patterns.flatMap((re) => [...code.matchAll(re)].map((m) => m[1]!));
  return [...new Set(specs.filter((s) => !s.startsWith('./') && !s.startsWith('node:')))].sort();
}

describe('the device build (scripts/build-device.ts)', () => {
  let dir: string;
  let out: string;
  let cleanup: () => Promise<void>;
  before(async () => {
    ({ dir, cleanup } = await tempDir('ferry-device-build-'));
    out = join(dir, 'device');
    const r = spawnSync(process.execPath, [join(REPO, 'scripts', 'build-device.ts'), out], {
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
  });
  after(() => cleanup?.());

  describe('when built', () => {
    it('holds the CLI, the install worker and an executable launcher', () => {
      const files = readdirSync(out);
      for (const f of ['ferry', 'ferry.mjs', 'compute-worker.mjs']) assert.ok(files.includes(f), f);
      accessSync(join(out, 'ferry'), constants.X_OK);
    });

    it('imports nothing but its own files, Node built-ins and the left-out server', () => {
      const found = readdirSync(out)
        .filter((f) => f.endsWith('.mjs'))
        .flatMap((f) => foreignImports(readFileSync(join(out, f), 'utf8')));
      assert.deepEqual([...new Set(found)].sort(), ['@ferry/server', 'vite']);
    });
  });

  describe('when it runs the device demo', needs('mksquashfs'), () => {
    it('builds, signs and installs both releases through its worker threads', () => {
      const r = ferry(out, ['demo'], dir);
      assert.equal(r.status, 0, r.stderr + r.stdout);
      assert.equal(r.stdout.match(/boot-check: good/g)?.length, 2, r.stdout);
      const st = ferry(out, ['status', '--json', '--root', join(dir, '.cache/demo/device')], dir);
      assert.equal(st.status, 0, st.stderr);
      const status = JSON.parse(st.stdout) as {
        primary: string;
        slots: { bootname: string; record?: { release?: { version: string } } }[];
      };
      const primary = status.slots.find((s) => s.bootname === status.primary);
      assert.equal(primary?.record?.release?.version, '1.1.0');
    });
  });

  describe('when asked to run the fleet server', () => {
    it('refuses with SERVER_NOT_INSTALLED', () => {
      const r = ferry(out, ['server', '--db', join(dir, 'x.db'), '--repo', dir], dir);
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /error\[SERVER_NOT_INSTALLED\]/);
    });
  });
});
