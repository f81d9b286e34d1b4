/**
 * Test-only driver of deploy-faults.test.ts: deploys a release onto a fake device the way
 * `ferry deploy update` does once it has a verified manifest (DeviceDeployments.open, then
 * deployRelease with the device's options), with the tree read from a directory. Run as a
 * child process so that the test can SIGKILL it (fault.ts); prints each event as a JSON line.
 *
 *   node deploy-fault-child.ts <root> <config.toml> <manifest.json> <tree dir> [--wait]
 *
 * With --wait it loads, then waits for one JSON line of environment variables on stdin (e.g.
 * {"FERRY_FAULT_AT":"deploy-listed"}) before it deploys, so a test can start it ahead of time.
 */
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { Manifest } from '@ferry/core';
import { parseConfig } from './config.ts';
import { DeviceDeployments } from './deploy-device.ts';
import { deployRelease, type DeployEvent, type DeployResult } from './deploy-install.ts';
import { DirectoryTreeSource } from './deploy-source.ts';

/** Where the device and its next release are. */
export interface FaultDevice {
  root: string;
  config: string;
  manifest: string;
  tree: string;
}

/**
 * Opens the device's deployments (its power-cut recovery included) and deploys the release
 * unless the default deployment already has its counter: the rule `DeviceDeployments.update`
 * applies, so a re-run after a committed deploy does nothing.
 */
export async function deployOnDevice(
  d: FaultDevice,
  onEvent?: (e: DeployEvent) => void,
): Promise<DeployResult | undefined> {
  const config = parseConfig(await readFile(d.config, 'utf8'), { root: d.root });
  const manifest = JSON.parse(await readFile(d.manifest, 'utf8')) as Manifest;
  const dev = await DeviceDeployments.open(config);
  const def = dev.store.list().find((x) => x.isDefault);
  if (def && def.release.counter >= manifest.releaseCounter) return undefined;
  return deployRelease({
    store: dev.store,
    manifest,
    image: 'rootfs',
    source: new DirectoryTreeSource(d.tree),
    compatible: config.compatible,
    ...dev.deployOptions(),
    ...(onEvent ? { onEvent } : {}),
  });
}

if (import.meta.main) {
  const [root, config, manifest, tree] = process.argv.slice(2) as [string, string, string, string];
  if (process.argv.includes('--wait')) {
    // Loaded and waiting: the test starts the deploy (and the clock) with one line of env vars.
    const rl = createInterface({ input: process.stdin });
    const [line] = (await once(rl, 'line')) as [string];
    rl.close();
    Object.assign(process.env, JSON.parse(line) as Record<string, string>);
  }
  await deployOnDevice({ root, config, manifest, tree }, (e) =>
    process.stdout.write(`${JSON.stringify(e)}\n`),
  );
}
