/**
 * Admin authentication: scrypt password hashes (node:crypto), sessions in the database (only
 * the SHA-256 of the cookie value is stored), one CSRF token per session that every
 * state-changing request must echo in a header, and the role order viewer < operator < admin.
 */
import { createHash, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import type { Kysely } from 'kysely';
import { FerryError } from '@ferry/core';
import { ROLES, type Role } from '@ferry/protocol';
import type { FleetDb, UserTable } from './db-schema.ts';

/** The session cookie's name. */
export const SESSION_COOKIE = 'ferry_session';
/** The header carrying the CSRF token. */
export const CSRF_HEADER = 'x-csrf-token';
/** Sessions last 12 hours. */
export const SESSION_TTL_MS = 12 * 60 * 60 * 1000;

const SCRYPT = { N: 16384, r: 8, p: 1, keylen: 32 };

function scryptAsync(
  password: string,
  salt: Buffer,
  n: number,
  r: number,
  p: number,
): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(password, salt, SCRYPT.keylen, { N: n, r, p, maxmem: 64 * 1024 * 1024 }, (e, k) =>
      e ? reject(e) : resolve(k),
    ),
  );
}

/** `scrypt$N$r$p$salt$hash` (base64) for `password`. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const k = await scryptAsync(password, salt, SCRYPT.N, SCRYPT.r, SCRYPT.p);
  return `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${salt.toString('base64')}$${k.toString('base64')}`;
}

/** True if `password` matches `stored` (constant-time compare). */
export async function checkPassword(password: string, stored: string): Promise<boolean> {
  const [tag, n, r, p, salt, hash] = stored.split('$');
  if (tag !== 'scrypt' || !n || !r || !p || !salt || !hash) return false;
  const k = await scryptAsync(
    password,
    Buffer.from(salt, 'base64'),
    Number(n),
    Number(r),
    Number(p),
  );
  const want = Buffer.from(hash, 'base64');
  return want.length === k.length && timingSafeEqual(want, k);
}

// A hash to compare against when the user does not exist, so timing does not reveal usernames.
const DUMMY = hashPassword(randomBytes(16).toString('hex'));

/** Creates a user; SERVER_CONFLICT if the name is taken. */
export async function createUser(
  db: Kysely<FleetDb>,
  username: string,
  password: string,
  role: Role,
  now: number,
): Promise<void> {
  const r = await db
    .insertInto('users')
    .values({ username, password_hash: await hashPassword(password), role, created_at: now })
    .onConflict((oc) => oc.column('username').doNothing())
    .returning('username')
    .executeTakeFirst();
  if (!r) throw new FerryError('SERVER_CONFLICT', `user ${username} exists`);
}

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

/** A new session for valid credentials; SERVER_UNAUTHENTICATED otherwise. */
export async function login(
  db: Kysely<FleetDb>,
  username: string,
  password: string,
  now: number,
): Promise<{ token: string; csrfToken: string; user: UserTable; expiresAt: number }> {
  const user = await db
    .selectFrom('users')
    .selectAll()
    .where('username', '=', username)
    .executeTakeFirst();
  const ok = await checkPassword(password, user?.password_hash ?? (await DUMMY));
  if (!user || !ok) throw new FerryError('SERVER_UNAUTHENTICATED', 'wrong username or password');
  const token = randomBytes(32).toString('base64url');
  const csrfToken = randomBytes(24).toString('base64url');
  const expiresAt = now + SESSION_TTL_MS;
  await db
    .insertInto('sessions')
    .values({ id_hash: sha(token), username, csrf_token: csrfToken, expires_at: expiresAt })
    .execute();
  return { token, csrfToken, user, expiresAt };
}

/** The session's user, or SERVER_UNAUTHENTICATED (no cookie, unknown or expired session). */
export async function sessionUser(
  db: Kysely<FleetDb>,
  token: string | undefined,
  now: number,
): Promise<{ user: UserTable; csrfToken: string; expiresAt: number; idHash: string }> {
  if (!token || token.length > 128) throw new FerryError('SERVER_UNAUTHENTICATED', 'not logged in');
  const s = await db
    .selectFrom('sessions')
    .innerJoin('users', 'users.username', 'sessions.username')
    .selectAll()
    .where('sessions.id_hash', '=', sha(token))
    .executeTakeFirst();
  if (!s || s.expires_at <= now)
    throw new FerryError('SERVER_UNAUTHENTICATED', 'session expired or unknown');
  const { csrf_token, expires_at, id_hash, ...user } = s;
  return { user, csrfToken: csrf_token, expiresAt: expires_at, idHash: id_hash };
}

/** Ends a session. */
export async function logout(db: Kysely<FleetDb>, idHash: string): Promise<void> {
  await db.deleteFrom('sessions').where('id_hash', '=', idHash).execute();
}

/** SERVER_CSRF unless `sent` equals the session's token (constant-time). */
export function checkCsrf(expected: string, sent: string | undefined): void {
  const a = Buffer.from(expected);
  const b = Buffer.from(sent ?? '');
  if (a.length !== b.length || !timingSafeEqual(a, b))
    throw new FerryError('SERVER_CSRF', `missing or wrong ${CSRF_HEADER} header`);
}

/** SERVER_FORBIDDEN unless `role` is at least `min`. */
export function requireRole(role: Role, min: Role): void {
  if (ROLES.indexOf(role) < ROLES.indexOf(min))
    throw new FerryError('SERVER_FORBIDDEN', `this action needs the ${min} role`);
}
