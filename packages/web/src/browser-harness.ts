/**
 * Support for the end-to-end browser tests (no test-framework imports): the dashboard built
 * with Vite into a directory, a real fleet server serving it at /ui/, Debian's chromium, and
 * polling helpers. Screenshots go to packages/web/test-artifacts/.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { build } from 'vite';
import {
  createServer,
  importReleases,
  openDatabase,
  type Database,
  type FleetServer,
} from '@ferry/server';

const WEB = join(import.meta.dirname, '..');
/** Where the tests keep their screenshots (git-ignored). */
export const ARTIFACTS = join(WEB, 'test-artifacts');
/** The policy the server should send with the dashboard (docs/dashboard.md). */
export const CSP =
  "default-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/** Polls `read` until `ok` holds for its value; fails with the last value after `ms`. */
export async function until<T>(
  read: () => Promise<T>,
  ok: (v: T) => boolean,
  ms = 45_000,
): Promise<T> {
  const end = Date.now() + ms;
  let v = await read();
  while (!ok(v)) {
    if (Date.now() > end) assert.fail(`timed out; last value ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 250));
    v = await read();
  }
  return v;
}

/** Releases 1.2.0 and 1.3.0 of acme-widget in channel stable, as an import would give them. */
export function testReleases() {
  return [2, 3].map((n) => ({
    channel: 'stable',
    compatible: 'acme-widget',
    version: `1.${n}.0`,
    releaseCounter: n,
    manifestPath: `channels/stable/acme-widget/1.${n}.0/manifest.json`,
    manifestSha256: String(n).repeat(64),
    manifestLength: 1000 + n,
  }));
}

/** A fleet server on a fresh SQLite database serving a fresh dashboard build. */
export interface WebHarness {
  database: Database;
  server: FleetServer;
  url: string;
  close(): Promise<void>;
}

/** Builds the dashboard, starts the server with `admin`/`password` and the test releases. */
export async function startWebHarness(password: string): Promise<WebHarness> {
  const tmp = mkdtempSync(join(tmpdir(), 'ferry-web-'));
  mkdirSync(ARTIFACTS, { recursive: true });
  const database = await openDatabase(join(tmp, 'fleet.db'));
  await build({
    root: WEB,
    base: '/ui/',
    logLevel: 'error',
    build: { outDir: join(tmp, 'ui'), emptyOutDir: true },
  });
  const server = await createServer({
    dashboard: { dir: join(tmp, 'ui') },
    database,
    secureCookies: false,
    evaluateIntervalMs: 1000,
    bootstrapAdmin: { username: 'admin', password },
  });
  await importReleases(database.db, testReleases(), Date.now());
  const url = await server.listen(0);
  return {
    database,
    server,
    url,
    async close() {
      await server.close();
      await database.close();
      rmSync(tmp, { recursive: true, force: true });
    },
  };
}

/** Headless Debian chromium. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox'],
  });
}

/** Records uncaught page errors and CSP violations of `page` into `problems`. */
export function watchProblems(page: Page, problems: string[]): void {
  page.on('dialog', (d) => void d.accept());
  page.on('pageerror', (e) => problems.push(e.message));
  page.on('console', (m) => {
    if (/Content.Security.Policy/i.test(m.text())) problems.push(m.text());
  });
}

/** Logs in through the form on the current page (the login form must be shown). */
export async function logIn(page: Page, username: string, password: string): Promise<void> {
  await page.fill('#username', username);
  await page.fill('#password', password);
  await page.click('button[type=submit]');
  await page.locator('nav[aria-label=Main]').waitFor();
}
