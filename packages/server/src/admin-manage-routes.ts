/**
 * Admin routes that manage who and what may join the fleet: enrolment tokens, saved groups
 * and admin users. Registered through admin-routes.ts' `read` and `write`, which add the
 * session, role and CSRF checks and the audit entry.
 */
import type { Context } from 'hono';
import {
  enrolmentTokenCreateSchema,
  groupCreateSchema,
  userCreateSchema,
  userRoleSchema,
  type Role,
} from '@ferry/protocol';
import { createUser } from './admin-auth.ts';
import { createGroup, deleteGroup, listGroups } from './admin-groups.ts';
import { createToken, listTokens, revokeToken } from './admin-tokens.ts';
import { deleteUser, listUsers, setUserRole } from './admin-users.ts';
import { parseBody, type ServerContext } from './context.ts';

/** What every admin route handler may read from and set on its context. */
export type AdminEnv = {
  Variables: { username: string; role: Role; auditTarget: string | undefined };
};
/** A read route registrar: session and minimum role. */
export type AdminRead = (
  path: string,
  min: Role,
  h: (c: Context<AdminEnv>) => Promise<Response>,
) => unknown;
/** A mutating route registrar: session, role, CSRF, then the handler, then the audit entry. */
export type AdminWrite = (
  path: string,
  min: Role,
  action: string,
  h: (c: Context<AdminEnv>, body: Uint8Array) => Promise<Response>,
) => unknown;

/** Registers the token, group and user routes (docs/server.md "Admin API"). */
export function adminManageRoutes(ctx: ServerContext, read: AdminRead, write: AdminWrite): void {
  read('/enrolment-tokens', 'viewer', async (c) => c.json(await listTokens(ctx.db, ctx.now())));
  write('/enrolment-tokens', 'operator', 'token.create', async (c, b) => {
    const body = parseBody(enrolmentTokenCreateSchema, b);
    const t = await createToken(ctx.db, body, c.get('username'), ctx.now());
    c.set('auditTarget', t.id);
    return c.json(t, 201);
  });
  write('/enrolment-tokens/:id/revoke', 'operator', 'token.revoke', async (c) => {
    await revokeToken(ctx.db, c.req.param('id')!);
    return c.json({ ok: true });
  });

  read('/groups', 'viewer', async (c) => c.json(await listGroups(ctx.db)));
  write('/groups', 'operator', 'group.create', async (c, b) => {
    const body = parseBody(groupCreateSchema, b);
    c.set('auditTarget', body.name);
    return c.json(await createGroup(ctx.db, body, ctx.now()), 201);
  });
  write('/groups/:id/delete', 'operator', 'group.delete', async (c) => {
    await deleteGroup(ctx.db, c.req.param('id')!);
    return c.json({ ok: true });
  });

  read('/users', 'admin', async (c) => c.json(await listUsers(ctx.db)));
  write('/users', 'admin', 'user.create', async (c, b) => {
    const body = parseBody(userCreateSchema, b);
    await createUser(ctx.db, body.username, body.password, body.role, ctx.now());
    c.set('auditTarget', body.username);
    return c.json({ username: body.username, role: body.role }, 201);
  });
  write('/users/:id/role', 'admin', 'user.role', async (c, b) => {
    const { role } = parseBody(userRoleSchema, b);
    await setUserRole(ctx.db, c.req.param('id')!, role);
    return c.json({ ok: true });
  });
  write('/users/:id/delete', 'admin', 'user.delete', async (c) => {
    await deleteUser(ctx.db, c.req.param('id')!, c.get('username'));
    return c.json({ ok: true });
  });
}
