/**
 * Enrolment tokens for the admin API: create (the token is returned once; only its SHA-256
 * is stored), list (never the token, only an id from its hash) and revoke.
 */
import type { Kysely } from 'kysely';
import type { z } from 'zod';
import { FerryError } from '@ferry/core';
import type {
  EnrolmentTokenCreated,
  EnrolmentTokenView,
  enrolmentTokenCreateSchema,
} from '@ferry/protocol';
import type { FleetDb } from './db-schema.ts';
import { newToken, tokenHash } from './devices.ts';

type TokenCreate = z.infer<typeof enrolmentTokenCreateSchema>;

/** The public id of a token: 16 hex digits of its hash (the hash itself is never sent). */
const idOf = (hash: string): string => hash.slice(0, 16);
const TOKEN_ID = /^[0-9a-f]{16}$/;

/**
 * Creates a token for `body.uses` enrolments within `body.expiresInHours`.
 * @example
 * const { token } = await createToken(db, { uses: 10, expiresInHours: 24, channel: 'stable', tags: [] }, 'ops', Date.now());
 */
export async function createToken(
  db: Kysely<FleetDb>,
  body: TokenCreate,
  username: string,
  now: number,
): Promise<EnrolmentTokenCreated> {
  const token = newToken();
  const hash = tokenHash(token);
  const tags = [...new Set(body.tags)].sort();
  const expiresAt = now + body.expiresInHours * 3600_000;
  await db
    .insertInto('enrolment_tokens')
    .values({
      token_hash: hash,
      uses_left: body.uses,
      expires_at: expiresAt,
      channel: body.channel,
      tags: JSON.stringify(tags),
      created_by: username,
      created_at: now,
    })
    .execute();
  return { id: idOf(hash), token, uses: body.uses, expiresAt, channel: body.channel, tags };
}

/** Every token, newest first (at most 500), with its state at `now`. */
export async function listTokens(db: Kysely<FleetDb>, now: number): Promise<EnrolmentTokenView[]> {
  const rows = await db
    .selectFrom('enrolment_tokens')
    .selectAll()
    .orderBy('created_at', 'desc')
    .limit(500)
    .execute();
  return rows.map((r) => ({
    id: idOf(r.token_hash),
    channel: r.channel,
    tags: JSON.parse(r.tags) as string[],
    usesLeft: Number(r.uses_left),
    expiresAt: Number(r.expires_at),
    state: r.uses_left <= 0 ? 'used-up' : r.expires_at <= now ? 'expired' : 'active',
    createdBy: r.created_by,
    createdAt: Number(r.created_at),
  }));
}

/**
 * Deletes the token named by `id` so no further device can enrol with it (devices already
 * enrolled stay). SERVER_BAD_REQUEST for a malformed id, SERVER_NOT_FOUND for an unknown one.
 */
export async function revokeToken(db: Kysely<FleetDb>, id: string): Promise<void> {
  if (!TOKEN_ID.test(id))
    throw new FerryError('SERVER_BAD_REQUEST', 'token id must be 16 hex digits');
  // The id is hex only, so the LIKE pattern holds no wildcard but the trailing one.
  const r = await db
    .deleteFrom('enrolment_tokens')
    .where('token_hash', 'like', `${id}%`)
    .executeTakeFirst();
  if (Number(r.numDeletedRows) === 0) throw new FerryError('SERVER_NOT_FOUND', `no token ${id}`);
}
