/** The fleet server: devices, releases, rollouts, director signing, admin API. */
export { createServer, type ServerOptions, type FleetServer } from './server.ts';
export { openDatabase, parseDatabaseUrl, type Database, type Dialect } from './database.ts';
export type {
  CheckinStore,
  CheckinOutcome,
  SpendOutcome,
  NonceSpend,
  InventoryColumns,
  OpenRollout,
} from './checkin-store.ts';
export type { FleetDb } from './db-schema.ts';
export { jsonLogger, nullLogger, type Logger, type LogLevel } from './logger.ts';
export { Director, ASSIGNMENT_TTL_MS } from './director.ts';
export { HTTP_STATUS, statusFor } from './http-errors.ts';
export { readRepositoryReleases, type RepositoryRelease } from './repository.ts';
export { importReleases, listReleases } from './releases.ts';
export {
  createUser,
  hashPassword,
  checkPassword,
  CSRF_HEADER,
  SESSION_COOKIE,
} from './admin-auth.ts';
export { deviceIdOf, bucketOf } from './devices.ts';
export { whereFilter, matchesFilter } from './device-filter.ts';
export {
  inPhase,
  inWindow,
  isFinal,
  reportApplies,
  decideRollout,
  type RolloutStats,
  type RolloutDecision,
} from './rollout-plan.ts';
export { DeviceClient, type DeviceResponse } from './device-client.ts';
export { AdminClient } from './admin-client.ts';
export { simulate, type SimOptions, type SimStats } from './sim.ts';
