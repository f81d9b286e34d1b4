/**
 * Fault injection for power-cut tests: when FERRY_FAULT_AT names a step, the process kills
 * itself with SIGKILL right there, as a power cut would stop it. Unset, this is a no-op.
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

export type FaultPoint = (typeof FAULT_POINTS)[number];

export function faultPoint(name: FaultPoint): void {
  if (process.env.FERRY_FAULT_AT === name) process.kill(process.pid, 'SIGKILL');
}
