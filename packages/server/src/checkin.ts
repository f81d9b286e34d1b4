/**
 * A device check-in, the server's hot path: verify the signature (thread pool), parse the
 * body, then one transaction that spends the nonce, records the inventory and reads the
 * device's status and open rollouts, then the assignment (signed by the director) if any.
 */
import { FerryError } from '@ferry/core';
import { checkinRequestSchema, type CheckinResponse } from '@ferry/protocol';
import { assignmentFor } from './assign.ts';
import { parseBody, type ServerContext } from './context.ts';
import { refuse, type RawDeviceRequest } from './device-auth.ts';
import { inventoryColumns } from './devices.ts';

/** Handles one signed check-in request; throws the FerryError the route maps to HTTP. */
export async function checkIn(
  ctx: ServerContext,
  req: RawDeviceRequest,
  now: number,
): Promise<CheckinResponse> {
  const d = await ctx.devices.authenticate(req, now);
  const body = parseBody(checkinRequestSchema, d.body);
  const rollouts = await ctx.rollouts.current(now);
  const r = await ctx.checkins.checkin(
    d,
    inventoryColumns(body.inventory),
    now,
    rollouts.length > 0,
  );
  if (r.kind !== 'recorded') refuse(r.kind);
  if (r.device.status !== 'accepted')
    throw new FerryError('DEVICE_NOT_APPROVED', `device is ${r.device.status}`);
  ctx.metrics.inc('ferry_checkins_total', 'Device check-ins');
  const assignment =
    rollouts.length === 0
      ? null
      : await assignmentFor(ctx, r.device, rollouts, r.open, d.nonce, now);
  return { pollSeconds: ctx.pollSeconds, assignment, repositoryUrl: ctx.repositoryUrl };
}
