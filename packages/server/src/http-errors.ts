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

/** Hono's onError handler. */
export function errorResponse(logger: Logger) {
  return (err: Error, c: Context): Response => {
    if (err instanceof FerryError) {
      const status = statusFor(err.code);
      if (status >= 500)
        logger.log('error', 'http.error', {
          code: err.code,
          message: err.message,
          path: c.req.path,
        });
      return c.json({ code: err.code, message: err.message }, status);
    }
    logger.log('error', 'http.internal-error', {
      path: c.req.path,
      message: err.message,
      stack: err.stack,
    });
    return c.json({ code: 'INTERNAL', message: 'internal server error' }, 500);
  };
}
