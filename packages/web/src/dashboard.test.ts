/**
 * End to end: the built dashboard served by a real fleet server (SQLite, port 0), simulated
 * devices on the real protocol, and Debian's chromium driven by playwright-core. Screenshots of
 * the main pages go to packages/web/test-artifacts/.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { AdminClient, simulate, type SimStats } from '@ferry/server';
import { needs } from '@ferry/testing';
import {
  ARTIFACTS,
  CSP,
  launchChromium,
  startWebHarness,
  until,
  watchProblems,
  type WebHarness,
} from './browser-harness.ts';

const PASSWORD = 'correct horse battery staple';
const HEALTHY = 12;
const FLAKY = 20;

const rollout = (page: Page, name: string) =>
  page.locator(`article.rollout[data-rollout="${name}"]`);
const count = async (page: Page, name: string, key: string) =>
  Number(await rollout(page, name).locator(`[data-count="${key}"]`).textContent());
const stateOf = (page: Page, name: string) => rollout(page, name).getAttribute('data-state');

describe('dashboard', needs('chromium'), () => {
  let web: WebHarness;
  let url: string;
  let browser: Browser;
  let page: Page;
  const stop = new AbortController();
  let sims: Promise<SimStats[]>;
  const problems: string[] = [];

  before(async () => {
    web = await startWebHarness(PASSWORD);
    url = web.url;
    const index = await fetch(`${url}/ui/`);
    assert.equal(index.status, 200);
    assert.equal(index.headers.get('content-security-policy'), CSP);
    const admin = new AdminClient(url);
    await admin.login('admin', PASSWORD);
    const token = async (tag: string) =>
      (await admin.post<{ token: string }>('/api/v1/enrolment-tokens', { uses: 100, tags: [tag] }))
        .token;
    const common = {
      server: url,
      compatible: 'acme-widget',
      intervalMs: 1500,
      signal: stop.signal,
    };
    const healthy = await token('healthy');
    const flaky = await token('flaky');
    sims = Promise.all([
      simulate({ ...common, devices: HEALTHY, token: healthy }),
      simulate({ ...common, devices: FLAKY, token: flaky, failRate: 0.7, rollbackRate: 0.1 }),
    ]);
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    watchProblems(page, problems);
  });

  after(async () => {
    stop.abort();
    await sims?.catch(() => undefined);
    await browser?.close();
    await web?.close();
  });

  describe('when the password is wrong', () => {
    it('stays on the login form and shows the error code', async () => {
      await page.goto(`${url}/ui/`);
      await page.fill('#password', 'wrong password');
      await page.click('button[type=submit]');
      const alert = page.locator('form.login [role=alert]');
      await alert.waitFor({ state: 'visible' });
      assert.match((await alert.textContent()) ?? '', /SERVER_UNAUTHENTICATED/);
      await page.screenshot({ path: join(ARTIFACTS, 'login.png') });
    });
  });

  describe('when the admin logs in', () => {
    it('shows the fleet overview with every simulated device', async () => {
      await page.fill('#password', PASSWORD);
      await page.click('button[type=submit]');
      const total = page.locator('[data-testid=total-devices]');
      await until(
        () => total.textContent(),
        (t) => t === String(HEALTHY + FLAKY),
      );
      assert.equal(await page.locator('[data-testid=pending-devices]').textContent(), '0');
      const chart = page.getByRole('img', { name: /^Devices by status/ });
      assert.match((await chart.getAttribute('aria-label')) ?? '', /accepted 32/);
      await page.screenshot({ path: join(ARTIFACTS, 'overview-start.png'), fullPage: true });
    });
  });

  describe('when devices are searched and filtered', () => {
    it('lists the matching devices only', async () => {
      await page.click('nav >> text=Devices');
      const total = page.locator('[data-testid=device-total]');
      await until(
        () => total.textContent(),
        (t) => t === `${HEALTHY + FLAKY} devices match`,
      );
      await page.fill('#dev-tag', 'flaky');
      await until(
        () => total.textContent(),
        (t) => t === `${FLAKY} devices match`,
      );
      assert.equal(await page.locator('[data-testid=device-table] tbody tr').count(), FLAKY);
      await page.selectOption('#dev-status', 'pending');
      await until(
        () => total.textContent(),
        (t) => t === '0 devices match',
      );
      await page.selectOption('#dev-status', '');
      await page.fill('#dev-tag', '');
      await page.fill('#dev-search', "' OR 1=1 --");
      await until(
        () => total.textContent(),
        (t) => t === '0 devices match',
      );
      await page.fill('#dev-search', '');
      await until(
        () => total.textContent(),
        (t) => t === `${HEALTHY + FLAKY} devices match`,
      );
      await page.screenshot({ path: join(ARTIFACTS, 'devices.png'), fullPage: true });
    });
  });

  describe('when a rollout to healthy devices is started, paused and resumed', () => {
    it('shows the phases advance and every device commit', async () => {
      await page.click('nav >> text=Rollouts');
      await page.fill('#ro-name', 'healthy-1.2');
      await page.selectOption('#ro-release', { label: 'acme-widget 1.2.0 (counter 2)' });
      await page.fill('#ro-tag', 'healthy');
      await page.fill('#ro-phases', '50, 100');
      await page.click('form.rollout-form button[type=submit]');
      await rollout(page, 'healthy-1.2').waitFor();
      assert.match(
        (await rollout(page, 'healthy-1.2').locator('.phase').textContent()) ?? '',
        /phase 1 of 2/,
      );
      await page.getByRole('button', { name: 'pause healthy-1.2' }).click();
      await until(
        () => stateOf(page, 'healthy-1.2'),
        (s) => s === 'paused',
      );
      assert.match(
        (await rollout(page, 'healthy-1.2').locator('.pause-reason').textContent()) ?? '',
        /paused by an operator/,
      );
      await page.getByRole('button', { name: 'resume healthy-1.2' }).click();
      const seen: number[] = [];
      await until(
        async () => {
          seen.push(await count(page, 'healthy-1.2', 'committed'));
          return stateOf(page, 'healthy-1.2');
        },
        (s) => s === 'completed',
      );
      // Completed means the threshold was met with nothing in flight; a device that had not
      // checked in since the last phase opened still gets the release, so wait for it.
      await until(
        async () => {
          const n = await count(page, 'healthy-1.2', 'committed');
          seen.push(n);
          return n;
        },
        (n) => n === HEALTHY,
      );
      assert.equal(await count(page, 'healthy-1.2', 'targeted'), HEALTHY);
      assert.deepEqual(
        seen,
        [...seen].sort((a, b) => a - b),
      ); // progress never goes backwards
      assert.match(
        (await rollout(page, 'healthy-1.2').locator('.phase').textContent()) ?? '',
        /phase 2 of 2/,
      );
    });
  });

  describe('when a rollout meets failing devices', () => {
    it('pauses by itself above the failure threshold, and can be cancelled', async () => {
      await page.fill('#ro-name', 'flaky-1.3');
      await page.selectOption('#ro-release', { label: 'acme-widget 1.3.0 (counter 3)' });
      await page.fill('#ro-tag', 'flaky');
      await page.fill('#ro-phases', '50, 100');
      await page.fill('#ro-failure', '20');
      await page.click('form.rollout-form button[type=submit]');
      await until(
        () => stateOf(page, 'flaky-1.3'),
        (s) => s === 'paused',
      );
      const card = rollout(page, 'flaky-1.3');
      assert.match(
        (await card.locator('.pause-reason').textContent()) ?? '',
        /failure threshold passed/,
      );
      const rate = parseFloat((await card.getByTestId('failure-rate').textContent()) ?? '0');
      assert.ok(rate > 20, `failure rate ${rate} % should pass 20 %`);
      await page.screenshot({ path: join(ARTIFACTS, 'rollouts.png'), fullPage: true });
      await card.locator('h3 a').click();
      await page.locator('h1', { hasText: 'Rollout flaky-1.3' }).waitFor();
      await page.screenshot({ path: join(ARTIFACTS, 'rollout-detail.png'), fullPage: true });
      await page.click('nav >> text=Overview');
      const paused = page.locator('[data-testid=paused-rollouts]');
      await until(
        () => paused.textContent(),
        (t) => t === '1',
      );
      const byRelease = page.getByRole('img', { name: /^Devices by release/ });
      assert.match(
        (await byRelease.getAttribute('aria-label')) ?? '',
        new RegExp(`1\\.2\\.0 ${HEALTHY}`),
      );
      await rollout(page, 'flaky-1.3').waitFor();
      await page.screenshot({ path: join(ARTIFACTS, 'overview.png'), fullPage: true });
      await page.click('nav >> text=Rollouts');
      await page.getByRole('button', { name: 'cancel flaky-1.3' }).click();
      await until(
        () => stateOf(page, 'flaky-1.3'),
        (s) => s === 'cancelled',
      );
      await page.click('nav >> text=Overview');
      await until(
        () => page.locator('[data-testid=paused-rollouts]').textContent(),
        (t) => t === '0',
      );
    });
  });

  describe('when a device that committed is opened', () => {
    it('shows its slots, the new release and its install history', async () => {
      await page.click('nav >> text=Devices');
      await page.fill('#dev-tag', 'healthy');
      const rows = page.locator('[data-testid=device-table] tbody tr');
      await until(
        () => rows.count(),
        (n) => n === HEALTHY,
      );
      await rows.first().locator('a').click();
      const history = page.getByTestId('install-history');
      await history.waitFor();
      await until(
        () => history.textContent(),
        (t) => (t ?? '').includes('committed'),
      );
      await until(
        () => page.getByTestId('slots').textContent(),
        (t) => (t ?? '').includes('1.2.0'),
      );
      assert.ok((await page.getByTestId('timeline').locator('li').count()) >= 5);
      await page.screenshot({ path: join(ARTIFACTS, 'device-detail.png'), fullPage: true });
    });
  });

  describe('when the audit log is opened', () => {
    it('lists every admin action taken in the browser', async () => {
      await page.click('nav >> text=Releases');
      await page.getByTestId('releases').waitFor();
      await page.screenshot({ path: join(ARTIFACTS, 'releases.png'), fullPage: true });
      await page.click('nav >> text=Audit log');
      const audit = page.getByTestId('audit');
      await audit.waitFor();
      const text = (await audit.textContent()) ?? '';
      for (const action of [
        'auth.login',
        'rollout.create',
        'rollout.pause',
        'rollout.resume',
        'rollout.cancel',
      ])
        assert.ok(text.includes(action), `audit shows ${action}`);
      await page.screenshot({ path: join(ARTIFACTS, 'audit.png'), fullPage: true });
      assert.deepEqual(problems, []); // no uncaught error and no CSP violation on any page
    });
  });
});
