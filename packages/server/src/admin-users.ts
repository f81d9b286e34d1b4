/**
 * Admin user management: list, change role, delete. The server always keeps at least one
 * admin (otherwise nobody could manage users again) and an admin cannot delete the account
 * they are logged in with.
 */
import { sql, type Kysely } from 'kysely';
import { FerryError } from '@ferry/core';
import type { Role, UserView } from '@ferry/protocol';
import type { FleetDb } from './db-schema.ts';

/** Every user, by name. */
export async function listUsers(db: Kysely<FleetDb>): Promise<UserView[]> {
  const rows = await db
    .selectFrom('users')
    .select(['username', 'role', 'created_at'])
    .orderBy('username')
    .execute();
  return rows.map((r) => ({ username: r.username, role: r.role, createdAt: Number(r.created_at) }));
}

async function exists(db: Kysely<FleetDb>, username: string): Promise<boolean> {
  const r = await db
    .selectFrom('users')
    .select('username')
    .where('username', '=', username)
    .executeTakeFirst();
  return r !== undefined;
}

/** Rows of `users` that are not the last admin (one statement, so no check-then-act gap). */
const notLastAdmin = sql<boolean>`(role <> 'admin' or (select count(*) from users where role = 'admin') > 1)`;

/**
 * Gives `username` the role `role`; it applies to the user's open sessions at once.
 * SERVER_NOT_FOUND for an unknown user, SERVER_CONFLICT when it would demote the last admin.
 * @example
 * await setUserRole(db, 'vera', 'operator');
 */
export async function setUserRole(
  db: Kysely<FleetDb>,
  username: string,
  role: Role,
): Promise<void> {
  if (!(await exists(db, username)))
    throw new FerryError('SERVER_NOT_FOUND', `no user ${username}`);
  let q = db.updateTable('users').set({ role }).where('username', '=', username);
  if (role !== 'admin') q = q.where(notLastAdmin);
  const r = await q.executeTakeFirst();
  if (Number(r.numUpdatedRows) === 0)
    throw new FerryError('SERVER_CONFLICT', `${username} is the last admin`);
}

/**
 * Deletes `username` and ends their sessions (the audit log keeps their name).
 * SERVER_CONFLICT for `actor` itself or the last admin, SERVER_NOT_FOUND for an unknown user.
 */
export async function deleteUser(
  db: Kysely<FleetDb>,
  username: string,
  actor: string,
): Promise<void> {
  if (username === actor)
    throw new FerryError('SERVER_CONFLICT', 'you cannot delete the account you are logged in with');
  if (!(await exists(db, username)))
    throw new FerryError('SERVER_NOT_FOUND', `no user ${username}`);
  await db.transaction().execute(async (tx) => {
    await tx.deleteFrom('sessions').where('username', '=', username).execute();
    const r = await tx
      .deleteFrom('users')
      .where('username', '=', username)
      .where(notLastAdmin)
      .executeTakeFirst();
    if (Number(r.numDeletedRows) === 0)
      throw new FerryError('SERVER_CONFLICT', `${username} is the last admin`);
  });
}
