import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';
import { needs, tempDir } from '@ferry/testing';
import { AdminClient } from '@ferry/server';
import type { DeviceSummary, Page, RolloutView } from '@ferry/protocol';
import { COMMANDS } from './commands.ts';
import { ensureDashboard } from './fleet-demo-command.ts';

const bin = join(import.meta.dirname, '..', 'bin', 'ferry');
const here = (f: string) => pathToFileURL(join(import.meta.dirname, f)).href;
// Until commands.ts lists `demo fleet`, run it through main() with the command added.
const shim = `import { COMMANDS } from '${here('commands.ts')}';
import { demoFleet } from '${here('fleet-demo-command.ts')}';
import { main } from '${here('main.ts')}';
if (!COMMANDS.includes(demoFleet)) COMMANDS.push(demoFleet);
process.exitCode = await main(process.argv.slice(1));`;

interface DemoDoc {
  url: string;
  dashboard: string | null;
  username: string;
  password: string;
  devices: number;
  flaky: number;
  rollout: string;
}

let dir: string;
let cleanup: () => Promise<void>;
let child: ChildProcess | undefined;

function start(args: string[]): ChildProcess {
  const registered = COMMANDS.some((c) => c.name === 'demo fleet');
  return registered
    ? spawn(bin, ['demo', 'fleet', ...args], { cwd: dir })
    : spawn(process.execPath, ['--input-type=module', '-e', shim, 'demo', 'fleet', ...args], {
        cwd: dir,
      });
}

/** Resolves with the first complete JSON document the process prints on stdout. */
function firstDocument(p: ChildProcess, ms: number): Promise<DemoDoc> {
  return new Promise((res, rej) => {
    let out = '';
    let err = '';
    const t = setTimeout(() => rej(new Error(`no JSON document in ${ms} ms: ${err}`)), ms);
    p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    p.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      try {
        const doc = JSON.parse(out) as DemoDoc;
        clearTimeout(t);
        res(doc);
      } catch {
        // not complete yet
      }
    });
    p.once('exit', (code) => rej(new Error(`exited ${code} before its document: ${err}`)));
  });
}

async function until<T>(ms: number, probe: () => Promise<T | undefined>): Promise<T> {
  for (
    const end = Date.now() + ms;
    Date.now() < end;
    await new Promise((r) => setTimeout(r, 500))
  ) {
    const v = await probe();
    if (v !== undefined) return v;
  }
  throw new Error(`condition not met within ${ms} ms`);
}

before(async () => {
  ({ dir, cleanup } = await tempDir('ferry-fleet-demo-'));
});
after(async () => {
  child?.kill('SIGKILL');
  await cleanup();
});

describe('ferry demo fleet', () => {
  describe('when run with --port 0 --duration 40 --json', () => {
    it(
      'enrols the devices, moves a phased rollout, serves the dashboard and stops on SIGTERM',
      needs('mksquashfs'),
      async () => {
        assert.ok(await ensureDashboard(() => undefined), 'the dashboard builds');
        child = start(['--port', '0', '--duration', '40', '--json', '--dir', join(dir, 'demo')]);
        const exited = new Promise<number | null>((res) => child!.once('exit', res));
        const doc = await firstDocument(child, 30_000);
        assert.equal(doc.username, 'admin');
        assert.equal(doc.dashboard, `${doc.url}/ui/`);
        const admin = new AdminClient(doc.url);
        await admin.login(doc.username, doc.password);

        const page = await until(20_000, async () => {
          const p = await admin.get<Page<DeviceSummary>>('/api/v1/devices?limit=100');
          return p.total >= 25 ? p : undefined;
        });
        const flaky = await admin.get<Page<DeviceSummary>>('/api/v1/devices?tag=flaky&limit=100');
        assert.equal(doc.devices, 25);
        assert.equal(page.total, 25);
        assert.equal(flaky.total, 5);
        const rollout = await until(35_000, async () => {
          const list = await admin.get<RolloutView[]>('/api/v1/rollouts');
          const r = list.find((x) => x.name === doc.rollout);
          return r && r.counts.committed > 0 ? r : undefined;
        });
        assert.equal(rollout.version, '1.1.0');
        assert.deepEqual(rollout.phases, [10, 25, 50, 100]);
        assert.equal(rollout.targeted, 25);

        const ui = await fetch(doc.dashboard);
        assert.equal(ui.status, 200);
        assert.match(ui.headers.get('content-type') ?? '', /text\/html/);
        assert.match(await ui.text(), /<html/i);

        child.kill('SIGTERM');
        assert.equal(await exited, 0, 'a clean shutdown exits 0');
        await assert.rejects(fetch(`${doc.url}/healthz`), 'the server is closed');
      },
    );
  });
});
