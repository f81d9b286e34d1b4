/**
 * The boot check of a deployment device: what `ferry boot-check` does when `[deploy] boot` is not
 * `none`. It notices that the bootloader fell back (the running deployment is not the default:
 * the new one ran out of attempts), runs the health checks of `[health]`, then marks the running
 * deployment good, or rolls back to the previous deployment and reboots.
 *
 * Invariant: the only deployment it ever makes the default is one that has booted before (the
 * running one after a fallback, the previous one after a failed check), and it never rolls back
 * when there is nothing to roll back to: that would leave no system to boot.
 */
import { FerryError } from '@ferry/core';
import type { DeviceDeployments } from './deploy-device.ts';
import { runHealthChecks, type HealthResult } from './health.ts';

/** What {@link deployBootCheck} found and did. */
export interface DeployBootCheckResult {
  deployment: string;
  result: 'good' | 'bad' | 'degraded';
  checks: HealthResult[];
  /** The default deployment that did not come up (the bootloader fell back from it). */
  fellBackFrom?: string;
  /** After a failed check: the deployment that boots next. */
  rolledBackTo?: string;
}

/** Events of the boot check, in the agent's vocabulary. */
export type DeployBootCheckEvent =
  | { id: 'rollback.detected'; from: string; to: string; reason: string }
  | { id: 'health.result'; check: string; ok: boolean; detail: string; seconds: number }
  | { id: 'rollback.triggered'; from: string; to: string; reason: string };

/**
 * Runs the boot check of the running deployment (`ferry.deployment=` on the kernel command line).
 *
 * @example
 * const dev = await DeviceDeployments.open(config);
 * const r = await deployBootCheck(dev, { reboot: () => rebootNow() });
 * if (r.result === 'bad') console.error(`rolled back to ${r.rolledBackTo}`);
 */
export async function deployBootCheck(
  dev: DeviceDeployments,
  opts: { reboot?: () => Promise<void>; onEvent?: (e: DeployBootCheckEvent) => void },
): Promise<DeployBootCheckResult> {
  const emit = opts.onEvent ?? (() => undefined);
  const list = dev.store.list();
  const booted = list.find((d) => d.isBooted);
  if (!booted)
    throw new FerryError(
      'DEPLOY_NOT_FOUND',
      'the kernel command line names no deployment of this store (ferry.deployment=)',
    );
  const def = list.find((d) => d.isDefault);
  let fellBackFrom: string | undefined;
  if (def && def.id !== booted.id) {
    // The bootloader did not boot the default: its attempts ran out, or it failed to start.
    const reason = `${def.id} did not boot to a good state (boot attempts ran out)`;
    await dev.rollback(booted.id);
    fellBackFrom = def.id;
    emit({ id: 'rollback.detected', from: def.id, to: booted.id, reason });
  }
  const checks = await runHealthChecks(dev.config.health.dir, dev.config.health.timeoutSeconds, {
    FERRY_DEPLOYMENT: booted.id,
    FERRY_VERSION: booted.release.version,
  });
  for (const c of checks)
    emit({ id: 'health.result', check: c.name, ok: c.ok, detail: c.detail, seconds: c.seconds });
  const base = { deployment: booted.id, checks, ...(fellBackFrom ? { fellBackFrom } : {}) };
  if (checks.every((c) => c.ok)) {
    await dev.markGood();
    return { ...base, result: 'good' };
  }
  const previous = dev.store
    .list()
    .find((d) => d.isPrevious && d.id !== booted.id && d.id !== fellBackFrom);
  if (!previous) return { ...base, result: 'degraded' };
  const failed = checks.find((c) => !c.ok)!;
  const reason = `health check ${failed.name} failed: ${failed.detail}`;
  await dev.rollback(previous.id);
  emit({ id: 'rollback.triggered', from: booted.id, to: previous.id, reason });
  await opts.reboot?.();
  return { ...base, result: 'bad', rolledBackTo: previous.id };
}
