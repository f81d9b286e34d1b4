/// <reference lib="dom" />
/**
 * Admin users (admin role): create one with a role, change a user's role, delete a user. The
 * server keeps at least one admin and refuses deleting one's own account; the page offers
 * neither for the logged-in user.
 */
import { ROLE_NAMES } from '../states.ts';
import type { Role, UserView } from '@ferry/protocol';
import { currentSession, post, get } from '../api.ts';
import { h, replace } from '../dom.ts';
import { time } from '../format.ts';
import { choice, field, formStatus, input, onSubmit, whenChanged } from '../forms.ts';
import { actionButton, badge, section, table, type Page } from '../ui.ts';

const roleOptions = (): Array<[string, string]> => ROLE_NAMES.map((r) => [r, r]);

function userForm(created: () => Promise<void>): HTMLFormElement {
  const name = input('usr-name', { required: true, maxlength: 64, autocomplete: 'off' });
  const password = input('usr-password', {
    type: 'password',
    required: true,
    minlength: 12,
    maxlength: 256,
    autocomplete: 'new-password',
  });
  const role = choice('usr-role', roleOptions(), 'viewer');
  const msg = formStatus();
  const form = h(
    'form',
    { class: 'user-form', 'aria-label': 'Create a user' },
    h(
      'div',
      { class: 'fields' },
      field('usr-name', 'Username', name),
      field('usr-password', 'Password', password, 'at least 12 characters'),
      field(
        'usr-role',
        'Role',
        role,
        'viewer reads; operator also runs rollouts; admin also manages users',
      ),
    ),
    h('button', { type: 'submit' }, 'Create user'),
    msg,
  );
  onSubmit(form, msg, 'Creating…', async () => {
    const u = await post<{ username: string; role: Role }>('/users', {
      username: name.value.trim(),
      password: password.value,
      role: role.value,
    });
    form.reset();
    await created();
    return `User ${u.username} created as ${u.role}.`;
  });
  return form;
}

/** The role select and delete button of one user (none for oneself). */
function controls(u: UserView, done: () => Promise<void>): HTMLElement | string {
  if (u.username === currentSession()?.username) return 'this is you';
  const id = `role-${u.username}`;
  const role = choice(id, roleOptions(), u.role, { 'aria-label': `role of ${u.username}` });
  const path = `/users/${encodeURIComponent(u.username)}`;
  return h(
    'span',
    { class: 'actions' },
    role,
    actionButton('Set role', () => post(`${path}/role`, { role: role.value }), done, {
      name: `set role of ${u.username}`,
    }),
    actionButton('Delete', () => post(`${path}/delete`), done, {
      danger: true,
      name: `delete user ${u.username}`,
      confirm: `Delete user ${u.username}? Their sessions end now.`,
    }),
  );
}

/** The users page (`#/users`, admin role). */
export function usersPage(root: HTMLElement): Page {
  const list = h('div');
  const show = whenChanged<UserView[]>((us) =>
    replace(
      list,
      table(
        'Users',
        ['user', 'role', 'created', ''],
        us.map((u) => [
          u.username,
          badge(u.role),
          time(u.createdAt),
          controls(u, () => page.refresh()),
        ]),
        { testId: 'users' },
      ),
    ),
  );
  const page: Page = {
    async refresh() {
      show(await get<UserView[]>('/users'));
    },
  };
  replace(
    root,
    h('h1', {}, 'Users'),
    section(
      'New user',
      userForm(() => page.refresh()),
    ),
    section('Users', list),
  );
  return page;
}
