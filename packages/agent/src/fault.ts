/**
 * Fault injection for power-cut tests: when FERRY_FAULT_AT names a step, the process kills
 * itself with SIGKILL right there, as a power cut would stop it; with FERRY_FAULT_HIT=N, at the
 * Nth time it gets there (a step inside a loop). Unset, this is a no-op.
 */
export const FAULT_POINTS = [
  'opened',
  'planned',
  'prepared',
  'first-chunk',
  'written',
  'verified',
  'recorded',
  'committed',
] as const;

/** The steps of a deployment (deployRelease and the store work it runs), in order. */
export const DEPLOY_FAULT_POINTS = [
  'deploy-listed', // the listing fetched and checked against the manifest
  'deploy-object', // one more object read into objects/tmp (FERRY_FAULT_HIT: the Nth)
  'deploy-checked-out', // the checkout renamed into place and recorded, not yet verified
  'deploy-etc-written', // the merged /etc flushed in etc/<id>.tmp, not yet renamed
  'deploy-boot-added', // the boot entry written, the old default still boots
  'deploy-boot-committed', // the bootloader switched, deployments.json not yet
  'deploy-default-set', // deployments.json switched, nothing pruned yet
  'deploy-pruned', // old deployments removed from the store, their boot entries not yet
  'deploy-gc', // gc deleted one more object (FERRY_FAULT_HIT: the Nth)
] as const;

/** The steps of placing a new slot's kernel on the ESP (systemd-boot), between 'recorded' and 'committed'. */
export const ESP_FAULT_POINTS = [
  'esp-kernel-copied', // kernel and initramfs renamed into place, the slot's entry not yet written
  'esp-entry-written', // the slot's entry written (no tries left), unreferenced files not yet removed
  'esp-pruned', // unreferenced kernel files removed, the bootloader not yet switched
] as const;

export type FaultPoint =
  | (typeof FAULT_POINTS)[number]
  | (typeof DEPLOY_FAULT_POINTS)[number]
  | (typeof ESP_FAULT_POINTS)[number];

let hits = 0;

/** Kills this process with SIGKILL if FERRY_FAULT_AT names `name` (at its FERRY_FAULT_HIT-th pass). */
export function faultPoint(name: FaultPoint): void {
  if (process.env.FERRY_FAULT_AT !== name) return;
  if (++hits >= Number(process.env.FERRY_FAULT_HIT ?? 1)) process.kill(process.pid, 'SIGKILL');
}
