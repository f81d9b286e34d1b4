/// <reference lib="dom" />
/**
 * The dashboard's entry: restores the session (or shows the login form), draws the shell, and
 * routes `#/page/params` to a page that is refreshed by polling the admin API every 1.5 s
 * while the tab is visible.
 */
import { can, currentSession, logout, restore } from './api.ts';
import { h, replace } from './dom.ts';
import { loginPage } from './pages/login.ts';
import { auditPage } from './pages/audit.ts';
import { devicePage } from './pages/device.ts';
import { devicesPage } from './pages/devices.ts';
import { overviewPage } from './pages/overview.ts';
import { enrolmentPage } from './pages/enrolment.ts';
import { groupsPage } from './pages/groups.ts';
import { releasesPage } from './pages/releases.ts';
import { rolloutPage, rolloutsPage } from './pages/rollouts.ts';
import { usersPage } from './pages/users.ts';
import { errorBox, type Page, type PageFactory } from './ui.ts';

const POLL_MS = 1500;

/**
 * Route table: the first hash segment names the page; `detail` takes an id after it; `min`
 * hides the page from the navigation below that role (the server refuses its API anyway).
 */
const ROUTES: Record<
  string,
  { title: string; list: PageFactory; detail?: PageFactory; min?: 'admin' }
> = {
  overview: { title: 'Overview', list: overviewPage },
  devices: { title: 'Devices', list: devicesPage, detail: devicePage },
  releases: { title: 'Releases', list: releasesPage },
  rollouts: { title: 'Rollouts', list: rolloutsPage, detail: rolloutPage },
  groups: { title: 'Groups', list: groupsPage },
  enrolment: { title: 'Enrolment', list: enrolmentPage },
  users: { title: 'Users', list: usersPage, min: 'admin' },
  audit: { title: 'Audit log', list: auditPage, min: 'admin' },
};

const app = document.getElementById('app')!;
let page: Page | null = null;
let busy = false;
let failed = false;

function parseHash(): { name: string; params: string[] } {
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean);
  const name = parts[0] && parts[0] in ROUTES ? parts[0] : 'overview';
  return { name, params: parts.slice(1).map(decodeURIComponent) };
}

function nav(current: string): HTMLElement {
  const links = Object.entries(ROUTES)
    .filter(([, r]) => !r.min || can(r.min))
    .map(([name, r]) =>
      h('a', { href: `#/${name}`, 'aria-current': name === current ? 'page' : null }, r.title),
    );
  const s = currentSession();
  return h(
    'header',
    { class: 'top' },
    h('span', { class: 'brand' }, 'Ferry'),
    h('nav', { 'aria-label': 'Main' }, links),
    h(
      'span',
      { class: 'user' },
      s ? `${s.username} (${s.role})` : '',
      h('button', { type: 'button', class: 'secondary', onclick: () => void signOut() }, 'Log out'),
    ),
  );
}

async function signOut(): Promise<void> {
  await logout().catch(() => undefined);
  showLogin();
}

function showLogin(): void {
  page = null;
  document.title = 'Log in · Ferry';
  replace(
    app,
    loginPage(() => route()),
  );
}

function route(): void {
  if (!currentSession()) return showLogin();
  const { name, params } = parseHash();
  const r = ROUTES[name]!;
  const factory = params.length && r.detail ? r.detail : r.list;
  const main = h('main', { id: 'main', tabindex: -1 });
  const status = h('div', { class: 'status', role: 'status', id: 'poll-status' });
  replace(app, nav(name), status, main);
  document.title = `${r.title} · Ferry`;
  page = factory(main, params);
  void poll();
}

async function poll(): Promise<void> {
  if (!page || busy || document.hidden) return;
  const p = page;
  busy = true;
  try {
    await p.refresh();
    if (failed) document.getElementById('poll-status')?.replaceChildren();
    failed = false;
  } catch (e) {
    if (!currentSession()) return showLogin(); // the session expired
    failed = true;
    const el = document.getElementById('poll-status');
    if (el && p === page) replace(el, errorBox(e));
  } finally {
    busy = false;
  }
}

async function start(): Promise<void> {
  try {
    await restore();
  } catch (e) {
    replace(app, errorBox(e));
    return;
  }
  window.addEventListener('hashchange', route);
  setInterval(() => void poll(), POLL_MS);
  route();
}

void start();
