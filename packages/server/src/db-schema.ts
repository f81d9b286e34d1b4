/**
 * The fleet database's tables as Kysely types. Times are integer milliseconds since the epoch,
 * booleans 0/1 and structured fields JSON text, so SQLite and PostgreSQL store the same
 * values (migrations.ts creates them).
 */
import type { Generated } from 'kysely';

export interface DeviceTable {
  id: string;
  public_key: string;
  status: 'pending' | 'accepted' | 'rejected';
  compatible: string;
  hardware_id: string | null;
  agent_version: string | null;
  booted_slot: string | null;
  release: string | null;
  release_counter: number | null;
  slots: string;
  attributes: string;
  tags: string;
  channel: string;
  /** 0..9999 from the id: which phase of a rollout reaches the device. */
  bucket: number;
  last_seen: number | null;
  created_at: number;
}

export interface EnrolmentTokenTable {
  token_hash: string;
  uses_left: number;
  expires_at: number;
  channel: string;
  tags: string;
  created_by: string;
  created_at: number;
}

export interface NonceTable {
  device_id: string;
  nonce: string;
  expires_at: number;
}

export interface ReleaseTable {
  id: string;
  compatible: string;
  version: string;
  release_counter: number;
  manifest_sha256: string;
  manifest_length: number;
  imported_at: number;
}

export interface ChannelReleaseTable {
  channel: string;
  release_id: string;
  manifest_path: string;
}

export interface GroupTable {
  name: string;
  filter: string;
  created_at: number;
}

export interface RolloutTable {
  id: string;
  name: string;
  release_id: string;
  channel: string;
  filter: string;
  phases: string;
  phase: number;
  state: 'running' | 'paused' | 'completed' | 'cancelled';
  pause_reason: string | null;
  success_threshold: number;
  failure_threshold: number;
  min_reports: number;
  windows: string;
  /** 1: devices install, then wait for their user's confirmation (migration 0002). */
  confirm: number;
  salt: number;
  /** Final and bad reports an operator acknowledged by resuming after a pause. */
  ack_final: number;
  ack_bad: number;
  created_by: string;
  created_at: number;
  updated_at: number;
}

export interface RolloutDeviceTable {
  rollout_id: string;
  device_id: string;
  state: string;
  progress: number | null;
  final: number;
  updated_at: number;
}

export interface DeviceEventTable {
  id: Generated<number>;
  device_id: string;
  rollout_id: string | null;
  state: string;
  progress: number | null;
  detail: string | null;
  at: number;
}

export interface UserTable {
  username: string;
  password_hash: string;
  role: 'viewer' | 'operator' | 'admin';
  created_at: number;
}

export interface SessionTable {
  id_hash: string;
  username: string;
  csrf_token: string;
  expires_at: number;
}

export interface AuditTable {
  id: Generated<number>;
  at: number;
  username: string;
  action: string;
  target: string | null;
  detail: string;
}

/** Every table, for `Kysely<FleetDb>`. */
export interface FleetDb {
  devices: DeviceTable;
  enrolment_tokens: EnrolmentTokenTable;
  request_nonces: NonceTable;
  releases: ReleaseTable;
  channel_releases: ChannelReleaseTable;
  device_groups: GroupTable;
  rollouts: RolloutTable;
  rollout_devices: RolloutDeviceTable;
  device_events: DeviceEventTable;
  users: UserTable;
  sessions: SessionTable;
  audit_log: AuditTable;
}
