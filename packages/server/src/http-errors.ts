/**
 * The one place error codes become HTTP: every route throws FerryError, and `errorResponse`
 * maps its code to a status and a `{code, message}` body. Anything else is an internal error:
 * logged with its stack, answered with a generic message (no internals leak to clients).
 */
import type { Context } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { FerryError, type ErrorCode } from '@ferry/core';
import type { Logger } from './logger.ts';

/** HTTP status per code; codes not listed are 400 (the client sent something refused). */
export const HTTP_STATUS: Partial<Record<ErrorCode, ContentfulStatusCode>> = {
  SERVER_BAD_REQUEST: 400,
  JSON_MALFORMED: 400,
  USAGE: 400,
  SERVER_UNAUTHENTICATED: 401,
  DEVICE_AUTH_FAILED: 401,
  DEVICE_REPLAY: 401,
  DEVICE_SESSION_EXPIRED: 401,
  SERVER_FORBIDDEN: 403,
  SERVER_CSRF: 403,
  DEVICE_NOT_APPROVED: 403,
  DEVICE_ENROLMENT_REFUSED: 403,
  SERVER_NOT_FOUND: 404,
  REPO_RELEASE_NOT_FOUND: 404,
  SERVER_CONFLICT: 409,
  SERVER_BODY_TOO_LARGE: 413,
  SERVER_RATE_LIMITED: 429,
  INTERNAL: 500,
  IO: 500,
  SERVER_DATABASE: 503,
  SERVER_REPOSITORY: 502,
};

/** The status for `code`. */
export function statusFor(code: ErrorCode): ContentfulStatusCode {
  return HTTP_STATUS[code] ?? 400;
}

/**
 * The status and body for an error thrown while serving `path`: a FerryError's code and
 * message; anything else a generic internal error. Server-side failures (5xx) are logged,
 * unexpected errors with their stack. Used by Hono's onError and by the check-in route.
 */
export function errorAnswer(
  err: unknown,
  logger: Logger,
  path: string,
): { status: ContentfulStatusCode; body: { code: string; message: string } } {
  if (err instanceof FerryError) {
    const status = statusFor(err.code);
    if (status >= 500)
      logger.log('error', 'http.error', { code: err.code, message: err.message, path });
    return { status, body: { code: err.code, message: err.message } };
  }
  const e = err instanceof Error ? err : new Error(String(err));
  logger.log('error', 'http.internal-error', { path, message: e.message, stack: e.stack });
  return { status: 500, body: { code: 'INTERNAL', message: 'internal server error' } };
}

/** Hono's onError handler. */
export function errorResponse(logger: Logger) {
  return (err: Error, c: Context): Response => {
    const a = errorAnswer(err, logger, c.req.path);
    return c.json(a.body, a.status);
  };
}
