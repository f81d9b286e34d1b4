/**
 * Response shapes of the server's JSON API, for the agent and the dashboard. The server builds
 * exactly these; the dashboard renders them (fleet overview, device list and detail, releases
 * and channels, rollouts with phase progress, audit log).
 */
import { z } from 'zod';
import {
  ROLES,
  groupCreateSchema,
  rolloutCreateSchema,
  type DeviceUpdateState,
  type DeviceFilter,
  type MaintenanceWindow,
  type Role,
} from './schemas.ts';
import type { SignedAssignment } from './director.ts';

/** Every error response: `{ code, message }` with a stable code (docs/errors.md). */
export interface ErrorBody {
  code: string;
  message: string;
}

/** POST /api/v1/device/enrol response. */
export interface EnrolResponse {
  deviceId: string;
  status: DeviceStatus;
}

/** POST /api/v1/device/session response (device-session.ts). */
export interface SessionResponse {
  /** The session id, carrying its expiry (SESSION_ID_RE). */
  sessionId: string;
  /** Ms since the epoch, server clock. */
  expiresAt: number;
  /** The server's ephemeral X25519 public key (hex). */
  serverKey: string;
  /** The session key, masked with a pad only the device can derive (hex). */
  wrappedKey: string;
}

/** POST /api/v1/device/checkin response. */
export interface CheckinResponse {
  /** Seconds until the next check-in. */
  pollSeconds: number;
  assignment: SignedAssignment | null;
  /** Base URL of the TUF repository (this server's /repo or a CDN). */
  repositoryUrl: string | null;
}

export type DeviceStatus = 'pending' | 'accepted' | 'rejected';

/** A device as lists show it. */
export interface DeviceSummary {
  id: string;
  status: DeviceStatus;
  compatible: string;
  hardwareId: string | null;
  channel: string;
  tags: string[];
  release: string | null;
  releaseCounter: number | null;
  bootedSlot: string | null;
  agentVersion: string | null;
  lastSeen: number | null;
  createdAt: number;
}

/** One event of a device's timeline. */
export interface DeviceEvent {
  at: number;
  rolloutId: string | null;
  state: DeviceUpdateState | 'enrolled' | 'approved' | 'rejected';
  progress: number | null;
  detail: string | null;
}

/** GET /api/v1/devices/:id response. */
export interface DeviceDetail extends DeviceSummary {
  publicKey: string;
  slots: Array<{ name: string; version?: string; releaseCounter?: number; health: string }>;
  attributes: Record<string, string>;
  events: DeviceEvent[];
}

/** A release imported from the signed repository. */
export interface ReleaseView {
  compatible: string;
  version: string;
  releaseCounter: number;
  manifestSha256: string;
  manifestLength: number;
  channels: Array<{ channel: string; manifestPath: string }>;
  importedAt: number;
}

export type RolloutState = 'running' | 'paused' | 'completed' | 'cancelled';

/** Counts of one rollout's devices by state. */
export type StateCounts = Record<DeviceUpdateState, number>;

/** GET /api/v1/rollouts/:id response (and list entries). */
export interface RolloutView {
  id: string;
  name: string;
  compatible: string;
  version: string;
  channel: string;
  filter: DeviceFilter;
  phases: number[];
  /** Index into phases of the phase now open. */
  phase: number;
  state: RolloutState;
  pauseReason: string | null;
  successThreshold: number;
  failureThreshold: number;
  minReports: number;
  windows: MaintenanceWindow[];
  /** Devices wait for their user's confirmation before activating the release. */
  confirm: boolean;
  counts: StateCounts;
  /** Devices the filter selects in total, and in the phases opened so far. */
  targeted: number;
  targetedInPhase: number;
  failureRate: number;
  createdBy: string;
  createdAt: number;
  updatedAt: number;
}

/** GET /api/v1/overview response. */
export interface FleetOverview {
  devices: { total: number; byStatus: Record<string, number>; onlineLastHour: number };
  byRelease: Array<{ release: string | null; count: number }>;
  rollouts: { running: number; paused: number };
}

/** One audit log entry: every admin action. */
export interface AuditEntry {
  id: number;
  at: number;
  username: string;
  action: string;
  target: string | null;
  detail: unknown;
}

/** GET /api/v1/auth/me and login response. */
export interface SessionView {
  username: string;
  role: Role;
  csrfToken: string;
  expiresAt: number;
}

/** A paged list. */
export interface Page<T> {
  items: T[];
  total: number;
}

/** An enrolment token as GET /api/v1/enrolment-tokens lists it (never the token itself). */
export interface EnrolmentTokenView {
  /** The first 16 hex digits of the token's SHA-256: names it for revocation. */
  id: string;
  channel: string;
  tags: string[];
  usesLeft: number;
  expiresAt: number;
  state: 'active' | 'expired' | 'used-up';
  createdBy: string;
  createdAt: number;
}

/** POST /api/v1/enrolment-tokens response: the only time the token is shown. */
export interface EnrolmentTokenCreated {
  id: string;
  token: string;
  uses: number;
  expiresAt: number;
  channel: string;
  tags: string[];
}

/** A saved group as GET /api/v1/groups lists it. */
export interface GroupView {
  name: string;
  filter: DeviceFilter;
  createdAt: number;
}

/** An admin user as GET /api/v1/users lists it. */
export interface UserView {
  username: string;
  role: Role;
  createdAt: number;
}

/** POST /api/v1/users/:username/role body. */
export const userRoleSchema = z.strictObject({ role: z.enum(ROLES) });

/**
 * POST /api/v1/rollouts body as the admin API takes it: a rollout, optionally to a saved
 * group. The server resolves the group into the rollout's filter when it creates it.
 */
export const rolloutRequestSchema = rolloutCreateSchema.extend({
  group: groupCreateSchema.shape.name.optional(),
});
export type RolloutRequest = z.infer<typeof rolloutRequestSchema>;
