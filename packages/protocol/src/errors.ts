/**
 * The protocol's own error: packages/protocol imports nothing of Ferry's, so it cannot throw
 * FerryError. Its codes are the same strings as in core's ERROR_CODES, so the agent rethrows
 * them unchanged (`new FerryError(e.code, e.message)`).
 */

/** Codes the protocol throws: a subset of core's ERROR_CODES. */
export type ProtocolErrorCode =
  | 'DEVICE_ASSIGNMENT_INVALID'
  | 'DEVICE_ASSIGNMENT_STALE'
  | 'DEVICE_ASSIGNMENT_MISMATCH'
  | 'DEVICE_ASSIGNMENT_DOWNGRADE';

/** An error with a stable code from the protocol package. */
export class ProtocolError extends Error {
  readonly code: ProtocolErrorCode;

  constructor(code: ProtocolErrorCode, message: string) {
    super(message);
    this.name = 'ProtocolError';
    this.code = code;
  }
}
