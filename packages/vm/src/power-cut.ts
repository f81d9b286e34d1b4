/**
 * Power-cut instants for the VM tests: a small seeded generator (mulberry32), so a failing run
 * can be repeated with the same instants (FERRY_VM_SEED).
 */

/** A deterministic generator of floats in [0, 1) from a 32-bit seed. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * `count` points spread over `[0, window)` (instants, or install progress targets):
 * one per equal stratum (so early, middle and late phases are all hit), jittered by the seed.
 *
 * @example
 * cutInstants(20261122, 5, 40); // five instants, one in each 8 s band
 */
export function cutInstants(seed: number, count: number, window: number): number[] {
  const rnd = mulberry32(seed);
  const band = window / count;
  return Array.from({ length: count }, (_, i) => Number(((i + rnd()) * band).toFixed(2)));
}

/**
 * How far an install is, from one console line of `ferry install --json`: 0 at
 * `install.started`, 0.05-0.65 while writing (download or local), 0.65-0.95 while verifying,
 * 1 at `install.committed` (the bootloader switched), 1.05 at the final result. Undefined for
 * any other line.
 */
export function installProgress(line: string): number | undefined {
  if (!line.startsWith('{"id":"install.')) return undefined;
  let e: { id?: string; phase?: string; done?: number; total?: number };
  try {
    e = JSON.parse(line) as typeof e;
  } catch {
    return undefined;
  }
  const part = e.total ? Math.min(1, (e.done ?? 0) / e.total) : 0;
  switch (e.id) {
    case 'install.started':
      return 0;
    case 'install.progress':
      return e.phase === 'verify' ? 0.65 + 0.3 * part : 0.05 + 0.6 * part;
    case 'install.committed':
      return 1;
    case 'install.result':
      return 1.05;
    default:
      return undefined;
  }
}
