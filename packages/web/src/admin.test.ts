/**
 * End to end, the admin pages: enrolment tokens (created in the browser, used by simulated
 * devices, revoked), devices awaiting approval, saved groups and a rollout to one, users and
 * roles, a viewer who sees no mutating control and is refused by the API, and the audit log.
 * Real server (SQLite), real protocol, Debian's chromium.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import type { DeviceDetail, Inventory } from '@ferry/protocol';
import { AdminClient, DeviceClient, simulate, type SimStats } from '@ferry/server';
import { needs } from '@ferry/testing';
import {
  ARTIFACTS,
  launchChromium,
  logIn,
  startWebHarness,
  until,
  watchProblems,
  type WebHarness,
} from './browser-harness.ts';

const PASSWORD = 'correct horse battery staple';
const VIEWER_PASSWORD = 'viewer password 123';
const LAB = 2;
const INVENTORY: Inventory = { compatible: 'acme-widget', slots: [], attributes: {} };

/** Buttons and forms in the page body that change something (pager buttons do not). */
async function mutatingControls(page: Page): Promise<number> {
  const buttons = await page.locator('main button').count();
  const pager = await page.locator('main .pager button').count();
  const forms = await page.locator('main form:not([role=search])').count();
  return buttons - pager + forms;
}

const row = (page: Page, testId: string, text: string) =>
  page.getByTestId(testId).locator('tbody tr', { hasText: text });

/** Opens `#/name` and waits for the element that shows its data has loaded. */
async function open(page: Page, name: string, loaded: string): Promise<void> {
  await page.click(`nav >> text=${name}`);
  await page.locator(loaded).first().waitFor();
}

const PAGES: Array<[string, string]> = [
  ['Overview', '[data-testid=total-devices]:not(:empty)'],
  ['Devices', '[data-testid=device-table]'],
  ['Releases', '[data-testid=releases]'],
  ['Rollouts', 'article.rollout'],
  ['Groups', '[data-testid=groups]'],
  ['Enrolment', '[data-testid=pending-devices]'],
];

describe('admin pages', needs('chromium'), () => {
  let web: WebHarness;
  let browser: Browser;
  let page: Page;
  let viewerContext: BrowserContext;
  let api: AdminClient;
  let labToken = '';
  const stop = new AbortController();
  let sim: Promise<SimStats> | undefined;
  const problems: string[] = [];

  before(async () => {
    web = await startWebHarness(PASSWORD);
    api = new AdminClient(web.url);
    await api.login('admin', PASSWORD);
    browser = await launchChromium();
    const context = await browser.newContext({
      viewport: { width: 1280, height: 900 },
      permissions: ['clipboard-read', 'clipboard-write'],
    });
    page = await context.newPage();
    watchProblems(page, problems);
    await page.goto(`${web.url}/ui/`);
    await logIn(page, 'admin', PASSWORD);
  });

  after(async () => {
    stop.abort();
    await sim?.catch(() => undefined);
    await browser?.close();
    await web?.close();
  });

  describe('when an operator creates an enrolment token', () => {
    it('shows it once, copies it, and lists it without the secret', async () => {
      await open(page, 'Enrolment', '[data-testid=tokens]');
      await page.fill('#tok-uses', '3');
      await page.fill('#tok-tags', 'lab');
      await page.click('form.token-form button[type=submit]');
      const secret = page.getByTestId('new-token');
      await secret.waitFor();
      labToken = await secret.inputValue();
      assert.match(labToken, /^fet_[A-Za-z0-9_-]{32}$/);
      await page.getByRole('button', { name: 'Copy' }).click();
      await page.getByText('Copied.').waitFor();
      assert.equal(await page.evaluate(() => navigator.clipboard.readText()), labToken);
      const listed = row(page, 'tokens', 'lab');
      await listed.waitFor();
      assert.match((await listed.textContent()) ?? '', /stable.*lab.*3.*active.*admin/);
      await page.screenshot({ path: join(ARTIFACTS, 'enrolment-token.png'), fullPage: true });
      await page.getByRole('button', { name: 'Done' }).click();
      await open(page, 'Overview', '[data-testid=total-devices]');
      await open(page, 'Enrolment', '[data-testid=tokens] tbody tr');
      assert.ok(!(await page.content()).includes(labToken), 'the token is shown only once');
    });
  });

  describe('when devices enrol with the token and without one', () => {
    it('counts the token uses and lets the operator approve and reject the pending ones', async () => {
      sim = simulate({
        server: web.url,
        devices: LAB,
        token: labToken,
        compatible: 'acme-widget',
        intervalMs: 1000,
        signal: stop.signal,
      });
      const approved = new DeviceClient(web.url);
      const rejected = new DeviceClient(web.url);
      await approved.enrol(INVENTORY);
      await rejected.enrol(INVENTORY);
      await until(
        () => row(page, 'tokens', 'lab').locator('td').nth(3).textContent(),
        (t) => t === String(3 - LAB),
      );
      const pending = page.getByTestId('pending-total');
      await until(
        () => pending.textContent(),
        (t) => t === '2 devices waiting',
      );
      await page.screenshot({ path: join(ARTIFACTS, 'enrolment.png'), fullPage: true });
      await page.getByRole('button', { name: `approve ${approved.id}` }).click();
      await page.getByRole('button', { name: `reject ${rejected.id}` }).click();
      await until(
        () => pending.textContent(),
        (t) => t === '0 devices waiting',
      );
      const status = async (d: DeviceClient) =>
        (await api.get<DeviceDetail>(`/api/v1/devices/${d.id}`)).status;
      assert.equal(await status(approved), 'accepted');
      assert.equal(await status(rejected), 'rejected');
    });
    it('refuses a device whose token was revoked', async () => {
      await page.fill('#tok-uses', '5');
      await page.fill('#tok-tags', 'spare');
      await page.click('form.token-form button[type=submit]');
      const secret = page.getByTestId('new-token');
      await until(
        () => secret.inputValue(),
        (v) => v !== labToken,
      );
      const spare = await secret.inputValue();
      const id = ((await page.locator('label[for=new-token]').textContent()) ?? '').slice(6);
      await page.getByRole('button', { name: 'Done' }).click();
      await page.getByRole('button', { name: `revoke token ${id}` }).click();
      await until(
        () => row(page, 'tokens', 'spare').count(),
        (n) => n === 0,
      );
      const refused = await new DeviceClient(web.url)
        .enrol(INVENTORY, spare)
        .then(() => 'enrolled')
        .catch((e: { code: string }) => e.code);
      assert.equal(refused, 'DEVICE_ENROLMENT_REFUSED');
    });
  });

  describe('when a group is saved and a rollout started to it', () => {
    it('targets only the devices of the group', async () => {
      await open(page, 'Groups', '[data-testid=groups]');
      await page.fill('#grp-name', 'scratch');
      await page.fill('#grp-tags', 'nothing');
      await page.click('form.group-form button[type=submit]');
      await row(page, 'groups', 'scratch').waitFor();
      await page.getByRole('button', { name: 'delete group scratch' }).click();
      await until(
        () => row(page, 'groups', 'scratch').count(),
        (n) => n === 0,
      );
      await page.fill('#grp-name', 'lab-widgets');
      await page.fill('#grp-compatible', 'acme-widget');
      await page.fill('#grp-tags', 'lab');
      await until(
        () => page.getByTestId('group-preview').textContent(),
        (t) => t === `${LAB} devices match now`,
      );
      await page.click('form.group-form button[type=submit]');
      const saved = row(page, 'groups', 'lab-widgets');
      await saved.waitFor();
      assert.match((await saved.textContent()) ?? '', /"tags":\["lab"\]/);
      await page.screenshot({ path: join(ARTIFACTS, 'groups.png'), fullPage: true });

      await open(page, 'Rollouts', 'form.rollout-form');
      await page.fill('#ro-name', 'lab-1.2');
      await page.selectOption('#ro-release', { label: 'acme-widget 1.2.0 (counter 2)' });
      await page.selectOption('#ro-group', 'lab-widgets');
      await page.fill('#ro-phases', '100');
      await page.click('form.rollout-form button[type=submit]');
      const card = page.locator('article.rollout[data-rollout="lab-1.2"]');
      await until(
        () => card.getAttribute('data-state'),
        (s) => s === 'completed',
      );
      // Three accepted devices are in the channel; the group selects the two tagged lab.
      assert.equal(await card.locator('[data-count="targeted"]').textContent(), String(LAB));
      assert.equal(await card.locator('[data-count="committed"]').textContent(), String(LAB));
    });
  });

  describe('when an admin manages users', () => {
    it('creates users, changes a role and deletes a user, never offering to delete oneself', async () => {
      await open(page, 'Users', '[data-testid=users]');
      const create = async (name: string, password: string, role: string) => {
        await page.fill('#usr-name', name);
        await page.fill('#usr-password', password);
        await page.selectOption('#usr-role', role);
        await page.click('form.user-form button[type=submit]');
        await row(page, 'users', name).waitFor();
      };
      await create('vera', VIEWER_PASSWORD, 'viewer');
      await create('olaf', 'operator password 1', 'operator');
      await page.getByLabel('role of olaf', { exact: true }).selectOption('viewer');
      await page.getByRole('button', { name: 'set role of olaf' }).click();
      await until(
        () => row(page, 'users', 'olaf').locator('[data-state]').textContent(),
        (t) => t === 'viewer',
      );
      await page.getByRole('button', { name: 'delete user olaf' }).click();
      await until(
        () => row(page, 'users', 'olaf').count(),
        (n) => n === 0,
      );
      assert.equal(await page.getByRole('button', { name: 'delete user admin' }).count(), 0);
      assert.equal(
        await row(page, 'users', 'vera').locator('[data-state]').textContent(),
        'viewer',
      );
      await page.screenshot({ path: join(ARTIFACTS, 'users.png'), fullPage: true });
    });
  });

  describe('when a viewer logs in', () => {
    it('shows every page without a control that changes something', async () => {
      // The same pages offer mutating controls to the admin: the check below can fail.
      for (const [name, loaded] of [PAGES[3]!, PAGES[4]!, PAGES[5]!]) {
        await open(page, name, loaded);
        assert.ok((await mutatingControls(page)) > 0, `admin has controls on ${name}`);
      }
      viewerContext = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      const v = await viewerContext.newPage();
      watchProblems(v, problems);
      await v.goto(`${web.url}/ui/`);
      await logIn(v, 'vera', VIEWER_PASSWORD);
      const nav = (await v.locator('nav[aria-label=Main]').textContent()) ?? '';
      assert.doesNotMatch(nav, /Users|Audit log/);
      for (const [name, loaded] of PAGES) {
        await open(v, name, loaded);
        assert.equal(await mutatingControls(v), 0, `viewer sees a control on ${name}`);
        if (name === 'Enrolment' || name === 'Groups')
          await v.screenshot({
            path: join(ARTIFACTS, `viewer-${name.toLowerCase()}.png`),
            fullPage: true,
          });
      }
      await v.goto(`${web.url}/ui/#/users`);
      await until(
        () => v.locator('#poll-status').textContent(),
        (t) => (t ?? '').includes('SERVER_FORBIDDEN'),
      );
    });
    it('is refused by the API with 403 when it calls a mutating route directly', async () => {
      const v = viewerContext.pages()[0]!;
      const answers = await v.evaluate(async () => {
        const me = (await (await fetch('/api/v1/auth/me')).json()) as { csrfToken: string };
        const send = async (path: string, body: unknown) => {
          const r = await fetch(`/api/v1${path}`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'x-csrf-token': me.csrfToken },
            body: JSON.stringify(body),
          });
          return `${r.status} ${((await r.json()) as { code: string }).code}`;
        };
        return [
          await send('/groups', { name: 'sneaky', filter: {} }),
          await send('/enrolment-tokens', { uses: 1 }),
          await send('/users', { username: 'eve', password: 'x'.repeat(12), role: 'admin' }),
          await send('/users/vera/role', { role: 'admin' }),
        ];
      });
      assert.deepEqual(answers, Array(4).fill('403 SERVER_FORBIDDEN'));
      const users = await api.get<Array<{ username: string; role: string }>>('/api/v1/users');
      assert.deepEqual(
        users.map((u) => `${u.username}:${u.role}`),
        ['admin:admin', 'vera:viewer'],
      );
    });
  });

  describe('when the admin opens the audit log', () => {
    it('lists every admin action taken on these pages, without passwords', async () => {
      await open(page, 'Audit log', '[data-testid=audit]');
      const audit = page.getByTestId('audit');
      const text = (await audit.textContent()) ?? '';
      for (const action of [
        'token.create',
        'token.revoke',
        'device.approve',
        'device.reject',
        'group.create',
        'group.delete',
        'rollout.create',
        'user.create',
        'user.role',
        'user.delete',
      ])
        assert.ok(text.includes(action), `audit shows ${action}`);
      assert.match(
        (await audit.locator('tbody tr', { hasText: 'rollout.create' }).textContent()) ?? '',
        /"group":"lab-widgets"/,
      );
      assert.doesNotMatch(text, /viewer password|operator password|fet_/);
      await page.screenshot({ path: join(ARTIFACTS, 'audit-admin.png'), fullPage: true });
      assert.deepEqual(problems, []); // no uncaught error and no CSP violation on any page
    });
  });
});
