/**
 * Routes devices call (docs/server.md "Device API"). Every one is signed by the device key;
 * a device is identified only by its verified signature, so it can read and write nothing but
 * itself: no route takes a device id from the path or body.
 */
import { Hono, type Context } from 'hono';
import { FerryError } from '@ferry/core';
import {
  checkinRequestSchema,
  enrolRequestSchema,
  reportRequestSchema,
  type CheckinResponse,
  type EnrolResponse,
} from '@ferry/protocol';
import { applyReport, assignmentFor } from './assign.ts';
import { parseBody, type ServerContext } from './context.ts';
import { deviceIdOf, enrolDevice, getDevice, recordCheckin } from './devices.ts';
import { isFinal } from './rollout-plan.ts';
import type { RawDeviceRequest } from './device-auth.ts';

async function raw(c: Context): Promise<RawDeviceRequest> {
  const url = new URL(c.req.url);
  return {
    method: c.req.method,
    path: url.pathname + url.search,
    header: (n) => c.req.header(n),
    body: new Uint8Array(await c.req.arrayBuffer()),
  };
}

/** The device API, mounted at /api/v1/device. */
export function deviceRoutes(ctx: ServerContext): Hono {
  const app = new Hono();

  app.post('/enrol', async (c) => {
    const req = await raw(c);
    const body = parseBody(enrolRequestSchema, req.body);
    const now = ctx.now();
    await ctx.devices.verifyEnrolment(req, body.publicKey, deviceIdOf(body.publicKey), now);
    const r = await enrolDevice(ctx.db, body, now);
    if (r.created)
      ctx.logger.log('info', 'device.enrolled', { deviceId: r.deviceId, status: r.status });
    return c.json(
      { deviceId: r.deviceId, status: r.status } satisfies EnrolResponse,
      r.created ? 201 : 200,
    );
  });

  app.post('/checkin', async (c) => {
    const now = ctx.now();
    const d = await ctx.devices.verify(await raw(c), now);
    const body = parseBody(checkinRequestSchema, d.body);
    const row = await recordCheckin(ctx.db, d.deviceId, body.inventory, now);
    if (row.status !== 'accepted')
      throw new FerryError('DEVICE_NOT_APPROVED', `device is ${row.status}`);
    ctx.metrics.inc('ferry_checkins_total', 'Device check-ins');
    const assignment = await assignmentFor(ctx, row, d.nonce, now);
    const res: CheckinResponse = {
      pollSeconds: ctx.pollSeconds,
      assignment,
      repositoryUrl: ctx.repositoryUrl,
    };
    return c.json(res);
  });

  app.post('/report', async (c) => {
    const now = ctx.now();
    const d = await ctx.devices.verify(await raw(c), now);
    const body = parseBody(reportRequestSchema, d.body);
    const r = await applyReport(ctx.db, d.deviceId, body, now);
    ctx.metrics.inc('ferry_device_reports_total', 'Device reports by state', {
      state: body.state,
      applied: String(r.applied),
    });
    if (r.applied && isFinal(r.state)) {
      ctx.logger.log('info', `device.${r.state}`, {
        deviceId: d.deviceId,
        rolloutId: body.rolloutId,
      });
      ctx.scheduleEvaluation();
    }
    return c.json(r);
  });

  // A device reads its own record (the id comes from the verified signature only).
  app.post('/self', async (c) => {
    const d = await ctx.devices.verify(await raw(c), ctx.now());
    return c.json(await getDevice(ctx.db, d.deviceId));
  });

  return app;
}
