/**
 * `ferry boot-check` on a deployment device ([deploy] boot is not "none"): the health checks
 * decide about the running deployment instead of a slot.
 */
import {
  DeviceDeployments,
  deployBootCheck,
  type DeployBootCheckEvent,
  type HealthResult,
} from '@ferry/agent';
import { FerryError } from '@ferry/core';
import type { CommandContext } from './command.ts';
import { loadDeviceConfig } from './device-options.ts';

/** One line per health check, for the human output of `ferry boot-check`. */
export function humanChecks(checks: HealthResult[]): string[] {
  return checks.map(
    (c) =>
      `  ${c.ok ? 'ok  ' : 'FAIL'} ${c.name} (${c.seconds.toFixed(1)}s)${c.ok ? '' : `: ${c.detail}`}`,
  );
}

/**
 * Runs the deployment boot check when the device boots deployments; false when it boots slots
 * (the caller then runs the slot boot check).
 */
export async function deploymentBootCheck(
  ctx: CommandContext,
  o: { reboot?: () => Promise<void>; onEvent?: (e: DeployBootCheckEvent) => void },
): Promise<boolean> {
  const config = await loadDeviceConfig(ctx);
  if (config.deploy.boot === 'none') return false;
  const r = await deployBootCheck(await DeviceDeployments.open(config), o);
  ctx.out.result(r, () =>
    [
      ...(r.fellBackFrom
        ? [`fell back: ${r.fellBackFrom} did not come up, running ${r.deployment}`]
        : []),
      ...humanChecks(r.checks),
      `${r.deployment}: ${r.result}${r.rolledBackTo ? `, ${r.rolledBackTo} boots next` : ''}`,
    ].join('\n'),
  );
  if (r.result === 'bad')
    throw new FerryError(
      'HEALTH_CHECK_FAILED',
      `${r.deployment} failed its health checks: ${r.checks.find((c) => !c.ok)?.detail ?? ''}`,
    );
  return true;
}
