/**
 * Schemas of every request and response body of the fleet server (docs/server.md), shared by
 * the agent, the server and the dashboard. Every string and list is bounded: these bodies
 * come from outside.
 */
import { z } from 'zod';

const name = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/);
const text = (max: number) => z.string().max(max);
const hex64 = z.string().regex(/^[0-9a-f]{64}$/);

/** One installed slot in a device's inventory. */
export const slotSchema = z.strictObject({
  name: name,
  /** Release version installed in the slot, if known. */
  version: text(64).optional(),
  releaseCounter: z.number().int().min(0).optional(),
  health: z.enum(['good', 'bad', 'unknown']),
});

/** What a device reports at every check-in. */
export const inventorySchema = z.strictObject({
  compatible: text(128).min(1),
  hardwareId: text(128).optional(),
  agentVersion: text(64).optional(),
  bootedSlot: name.optional(),
  /** Release counter of the booted release: the device's anti-rollback floor. */
  releaseCounter: z.number().int().min(0).optional(),
  slots: z.array(slotSchema).max(16).default([]),
  attributes: z.record(name, text(256)).default({}),
});
export type Inventory = z.infer<typeof inventorySchema>;

/** POST /api/v1/device/enrol body (signed by the key it names: proof of possession). */
export const enrolRequestSchema = z.strictObject({
  publicKey: hex64,
  token: text(128).optional(),
  inventory: inventorySchema,
});
export type EnrolRequest = z.infer<typeof enrolRequestSchema>;

/** POST /api/v1/device/session body: the device's ephemeral X25519 public key (hex). */
export const sessionRequestSchema = z.strictObject({ publicKey: hex64 });
export type SessionRequest = z.infer<typeof sessionRequestSchema>;

/** POST /api/v1/device/checkin body. */
export const checkinRequestSchema = z.strictObject({ inventory: inventorySchema });
export type CheckinRequest = z.infer<typeof checkinRequestSchema>;

/** Per-device rollout states, in the order a healthy update passes them. */
export const DEVICE_UPDATE_STATES = [
  'assigned',
  'downloading',
  'installing',
  'rebooting',
  'committed',
  'failed',
  'rolled-back',
] as const;
export type DeviceUpdateState = (typeof DEVICE_UPDATE_STATES)[number];

/** States after which a device's update in a rollout never changes again. */
export const FINAL_UPDATE_STATES: readonly DeviceUpdateState[] = [
  'committed',
  'failed',
  'rolled-back',
];

/** POST /api/v1/device/report body: progress of the device's current assignment. */
export const reportRequestSchema = z.strictObject({
  rolloutId: text(64).min(1),
  state: z.enum(DEVICE_UPDATE_STATES).exclude(['assigned']),
  /** Percent of the download done, 0-100. */
  progress: z.number().int().min(0).max(100).optional(),
  detail: text(1024).optional(),
  /** Error code when failed or rolled back (ERROR_CODES). */
  errorCode: text(64).optional(),
});
export type ReportRequest = z.infer<typeof reportRequestSchema>;

/** A device's view of a filter: fields an admin may select devices by (never SQL). */
export const deviceFilterSchema = z.strictObject({
  compatible: text(128).optional(),
  channel: name.optional(),
  tags: z.array(name).max(16).optional(),
  status: z.enum(['pending', 'accepted', 'rejected']).optional(),
  release: text(64).optional(),
  attributes: z.record(name, text(256)).optional(),
  /** Substring of id or hardware id. */
  search: text(64).optional(),
});
export type DeviceFilter = z.infer<typeof deviceFilterSchema>;

/** A maintenance window, UTC: new assignments start only inside one. */
export const maintenanceWindowSchema = z.strictObject({
  days: z.array(z.number().int().min(0).max(6)).min(1).max(7),
  start: z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/),
  end: z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/),
});
export type MaintenanceWindow = z.infer<typeof maintenanceWindowSchema>;

/** POST /api/v1/rollouts body. */
export const rolloutCreateSchema = z.strictObject({
  name: text(128).min(1),
  release: z.strictObject({ compatible: text(128).min(1), version: text(64).min(1) }),
  /** Channel the release is taken from; targeted devices must follow it. */
  channel: name,
  filter: deviceFilterSchema.default({}),
  /** Cumulative percentages of the targeted devices, ascending, ending at 100. */
  phases: z.array(z.number().int().min(1).max(100)).min(1).max(10).default([1, 10, 50, 100]),
  /** Share of a phase's devices that must have committed before the next phase starts. */
  successThreshold: z.number().min(0).max(1).default(0.9),
  /** Share of final reports that are failures or rollbacks at which the rollout pauses. */
  failureThreshold: z.number().min(0).max(1).default(0.1),
  /** Final reports needed before the failure share is judged. */
  minReports: z.number().int().min(1).max(100000).default(3),
  windows: z.array(maintenanceWindowSchema).max(16).default([]),
  /** Devices install, then wait for their user to confirm (the assignment says so, signed). */
  confirm: z.boolean().default(false),
});
export type RolloutCreate = z.infer<typeof rolloutCreateSchema>;

/** POST /api/v1/auth/login body. */
export const loginSchema = z.strictObject({ username: name, password: text(256).min(1) });

/** Admin roles, least to most privileged. */
export const ROLES = ['viewer', 'operator', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** POST /api/v1/users body. */
export const userCreateSchema = z.strictObject({
  username: name,
  password: text(256).min(12),
  role: z.enum(ROLES),
});

/** PATCH /api/v1/devices/:id body. */
export const devicePatchSchema = z.strictObject({
  channel: name.optional(),
  tags: z.array(name).max(32).optional(),
});

/** POST /api/v1/enrolment-tokens body. */
export const enrolmentTokenCreateSchema = z.strictObject({
  uses: z.number().int().min(1).max(1_000_000).default(1),
  expiresInHours: z
    .number()
    .int()
    .min(1)
    .max(24 * 365)
    .default(24),
  channel: name.default('stable'),
  tags: z.array(name).max(32).default([]),
});

/** POST /api/v1/groups body: a named, saved device filter. */
export const groupCreateSchema = z.strictObject({ name: name, filter: deviceFilterSchema });
