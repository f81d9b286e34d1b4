/// <reference lib="dom" />
/** The login form: username and password, POST /auth/login, then the page the hash names. */
import { login } from '../api.ts';
import { h } from '../dom.ts';
import { errorText } from '../ui.ts';

/** Builds the login page; `onLogin` runs after a successful login. */
export function loginPage(onLogin: () => void): HTMLElement {
  const user = h('input', {
    id: 'username',
    name: 'username',
    autocomplete: 'username',
    required: true,
    value: 'admin',
  });
  const pass = h('input', {
    id: 'password',
    name: 'password',
    type: 'password',
    autocomplete: 'current-password',
    required: true,
  });
  const msg = h('p', { class: 'error', role: 'alert', hidden: true });
  const submit = h('button', { type: 'submit' }, 'Log in');
  const form = h(
    'form',
    { class: 'login card', 'aria-labelledby': 'login-title' },
    h('h1', { id: 'login-title' }, 'Ferry fleet'),
    h('label', { for: 'username' }, 'Username'),
    user,
    h('label', { for: 'password' }, 'Password'),
    pass,
    msg,
    submit,
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    submit.disabled = true;
    msg.hidden = true;
    login(user.value, pass.value)
      .then(() => onLogin())
      .catch((e: unknown) => {
        msg.textContent = errorText(e);
        msg.hidden = false;
        pass.select();
      })
      .finally(() => (submit.disabled = false));
  });
  return h('main', { id: 'main', class: 'center' }, form);
}
