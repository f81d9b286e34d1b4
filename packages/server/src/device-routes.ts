/**
 * Routes devices call (docs/server.md "Device API"). Every one is signed by the device key, or
 * carries the MAC of a session opened by such a signed request; a device is identified only by
 * its verified signature or MAC, so it can read and write nothing but itself: no route takes a
 * device id from the path or body.
 */
import { Hono, type Context } from 'hono';
import {
  enrolRequestSchema,
  reportRequestSchema,
  sessionRequestSchema,
  type EnrolResponse,
} from '@ferry/protocol';
import { applyReport } from './assign.ts';
import { checkIn } from './checkin.ts';
import { parseBody, type ServerContext } from './context.ts';
import { deviceIdOf, enrolDevice, getDevice } from './devices.ts';
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

  // A device session: one signed request, then MACs (protocol/device-session.ts).
  app.post('/session', async (c) => {
    const req = await raw(c);
    const body = parseBody(sessionRequestSchema, req.body);
    return c.json(await ctx.devices.openSession(req, body.publicKey, ctx.now()));
  });

  app.post('/checkin', async (c) => c.json(await checkIn(ctx, await raw(c), ctx.now())));

  app.post('/report', async (c) => {
    const now = ctx.now();
    // A rejected device changes no rollout state.
    const d = await ctx.devices.verify(await raw(c), now, { accepted: true });
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
