/**
 * The per-device update states in timeline order. A copy of the protocol's list (importing the
 * value would pull the schema library into the bundle); `satisfies` keeps the two in step.
 */
import type { DeviceUpdateState, Role } from '@ferry/protocol';

/** assigned → downloading → installing → rebooting → one final state. */
export const DEVICE_UPDATE_STATES_VIEW = [
  'assigned',
  'downloading',
  'installing',
  'rebooting',
  'committed',
  'failed',
  'rolled-back',
] as const satisfies readonly DeviceUpdateState[];

/** The final states. */
export const FINAL_STATES: readonly string[] = ['committed', 'failed', 'rolled-back'];

/** Admin roles, least to most privileged (a copy of the protocol's ROLES, for the same reason). */
export const ROLE_NAMES = ['viewer', 'operator', 'admin'] as const satisfies readonly Role[];
