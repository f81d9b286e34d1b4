/**
 * `ferry boot-check` on a deployment device ([deploy] boot is not "none"): the health checks
 * decide about the running deployment instead of a slot.
 */
import {
  DeviceDeployments,
  deployBootCheck,
  loadConfig,
  type DeployBootCheckEvent,
} from '@ferry/agent';
import { FerryError } from '@ferry/core';
import type { CommandContext } from './command.ts';
import { deviceOpts } from './device-options.ts';

/**
 * Runs the deployment boot check when the device boots deployments; false when it boots slots
 * (the caller then runs the slot boot check).
 */
export async function deploymentBootCheck(
  ctx: CommandContext,
  o: { reboot?: () => Promise<void>; onEvent?: (e: DeployBootCheckEvent) => void },
): Promise<boolean> {
  const d = deviceOpts(ctx);
  const config = await loadConfig({
    ...(d.configPath ? { path: d.configPath } : {}),
    ...(d.root ? { root: d.root } : {}),
  });
  if (config.deploy.boot === 'none') return false;
  const r = await deployBootCheck(await DeviceDeployments.open(config), o);
  ctx.out.result(r, () =>
    [
      ...(r.fellBackFrom
        ? [`fell back: ${r.fellBackFrom} did not come up, running ${r.deployment}`]
        : []),
      ...r.checks.map(
        (c) =>
          `  ${c.ok ? 'ok  ' : 'FAIL'} ${c.name} (${c.seconds.toFixed(1)}s)${c.ok ? '' : `: ${c.detail}`}`,
      ),
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
