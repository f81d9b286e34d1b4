/**
 * Director assignments (Uptane's director role, docs/server.md "Director"). The server signs,
 * with an online ed25519 key, "device D installs the manifest with this SHA-256 and release
 * counter", bound to the nonce of the device's own last signed request. The agent installs
 * only when `verifyAssignment` accepts it against the TUF-verified target of the same path:
 * a compromised server can then choose only among genuine releases, never an older one, and
 * cannot replay an assignment made for another device or another request.
 */
import { canonicalBytes, fromBase64, fromHex, preAuthEncoding } from './canonical.ts';
import { ProtocolError } from './errors.ts';
import { z } from 'zod';

/** The signature context of assignments (core's signPayload context). */
export const ASSIGNMENT_CONTEXT = 'director-assignment';

/** Longest an assignment stays valid after it is issued. */
export const ASSIGNMENT_MAX_AGE_MS = 24 * 60 * 60 * 1000;

/** What the director signs. */
export const assignmentSchema = z.strictObject({
  type: z.literal('ferry-assignment-v1'),
  deviceId: z.string().regex(/^[0-9a-f]{32}$/),
  rolloutId: z.string().min(1).max(64),
  compatible: z.string().min(1).max(128),
  version: z.string().min(1).max(64),
  /** TUF target path of the release's manifest envelope. */
  manifestPath: z.string().min(1).max(512),
  manifestSha256: z.string().regex(/^[0-9a-f]{64}$/),
  manifestLength: z.number().int().min(1),
  releaseCounter: z.number().int().min(0),
  /** The rollout asks the device's user to confirm before the new release is made primary. */
  confirm: z.boolean().optional(),
  /** The nonce of the device request this assignment answers. */
  nonce: z.string().min(16).max(64),
  issuedAt: z.number().int(),
  expiresAt: z.number().int(),
});
export type Assignment = z.infer<typeof assignmentSchema>;

/** A signed assignment as the check-in response carries it. */
export const signedAssignmentSchema = z.strictObject({
  signed: assignmentSchema,
  signatures: z
    .array(
      z.strictObject({
        keyid: z.string().regex(/^[0-9a-f]{64}$/),
        sig: z.string().length(88),
      }),
    )
    .min(1)
    .max(8),
});
export type SignedAssignment = z.infer<typeof signedAssignmentSchema>;

/** The bytes a director key signs for `a` (before the pre-authentication header). */
export function assignmentPayload(a: Assignment): Uint8Array {
  return canonicalBytes(a);
}

/** A director public key the device trusts: Ferry key id and raw 32-byte key (hex). */
export interface DirectorKey {
  keyId: string;
  publicKey: string;
}

/** The TUF target the agent verified for `manifestPath` (from the channel's targets role). */
export interface VerifiedTarget {
  path: string;
  length: number;
  sha256: string;
  custom: { compatible: string; version: string; releaseCounter: number };
}

/** What the device knows when it checks an assignment. */
export interface AssignmentContext {
  directorKeys: DirectorKey[];
  deviceId: string;
  compatible: string;
  /** The nonce the device sent with the check-in that returned the assignment. */
  nonce: string;
  /** Release counter the device runs: its anti-rollback floor. */
  installedCounter: number;
  /** The TUF-verified target of `assignment.manifestPath`, or undefined if TUF lists none. */
  target: VerifiedTarget | undefined;
  now?: number;
}

async function signedByTrustedKey(env: SignedAssignment, keys: DirectorKey[]): Promise<boolean> {
  const msg = preAuthEncoding(ASSIGNMENT_CONTEXT, assignmentPayload(env.signed));
  for (const s of env.signatures) {
    const k = keys.find((x) => x.keyId === s.keyid);
    if (!k) continue;
    try {
      const key = await crypto.subtle.importKey('raw', fromHex(k.publicKey), 'Ed25519', false, [
        'verify',
      ]);
      if (await crypto.subtle.verify('Ed25519', key, fromBase64(s.sig), msg)) return true;
    } catch {
      // A malformed key or signature verifies nothing; try the next signature.
    }
  }
  return false;
}

function fail(code: ProtocolError['code'], message: string): never {
  throw new ProtocolError(code, message);
}

/** Uptane full verification: the director's choice must equal the image repository's entry. */
function checkAgainstTarget(a: Assignment, ctx: AssignmentContext): void {
  const t = ctx.target;
  // A path TUF does not list: the server invented a release (arbitrary software attack).
  if (!t || t.path !== a.manifestPath)
    fail('DEVICE_ASSIGNMENT_MISMATCH', `TUF lists no target ${a.manifestPath}`);
  if (t.sha256 !== a.manifestSha256 || t.length !== a.manifestLength)
    fail('DEVICE_ASSIGNMENT_MISMATCH', 'manifest hash or length differs from TUF targets');
  if (
    t.custom.compatible !== a.compatible ||
    t.custom.version !== a.version ||
    t.custom.releaseCounter !== a.releaseCounter
  )
    fail('DEVICE_ASSIGNMENT_MISMATCH', 'compatible, version or counter differs from TUF targets');
  if (a.compatible !== ctx.compatible)
    fail('DEVICE_ASSIGNMENT_MISMATCH', `assignment is for compatible ${a.compatible}`);
  // An older genuine release is still refused: rollback attack by a compromised server.
  if (a.releaseCounter < ctx.installedCounter)
    fail('DEVICE_ASSIGNMENT_DOWNGRADE', `release counter ${a.releaseCounter} is below installed`);
}

/**
 * Checks a director assignment and returns it. Pure (no I/O): signature with a trusted
 * director key (WebCrypto, browser-safe), then device id, nonce and expiry (replay), then
 * agreement with the TUF target (arbitrary or older release).
 *
 * @example
 * const a = await verifyAssignment(res.assignment, {
 *   directorKeys, deviceId, compatible, nonce: sentNonce, installedCounter: 41,
 *   target: await tuf.targetInfo(res.assignment.signed.manifestPath),
 * });
 */
export async function verifyAssignment(raw: unknown, ctx: AssignmentContext): Promise<Assignment> {
  const parsed = signedAssignmentSchema.safeParse(raw);
  if (!parsed.success) fail('DEVICE_ASSIGNMENT_INVALID', 'assignment does not match its schema');
  const env = parsed.data;
  if (!(await signedByTrustedKey(env, ctx.directorKeys)))
    fail('DEVICE_ASSIGNMENT_INVALID', 'assignment is not signed by a trusted director key');
  const a = env.signed;
  if (a.deviceId !== ctx.deviceId)
    fail('DEVICE_ASSIGNMENT_STALE', 'assignment is for another device');
  if (a.nonce !== ctx.nonce)
    fail('DEVICE_ASSIGNMENT_STALE', 'assignment answers another request (replay)');
  const now = ctx.now ?? Date.now();
  if (now >= a.expiresAt || a.expiresAt - a.issuedAt > ASSIGNMENT_MAX_AGE_MS)
    fail('DEVICE_ASSIGNMENT_STALE', 'assignment has expired');
  checkAgainstTarget(a, ctx);
  return a;
}
