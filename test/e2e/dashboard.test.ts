import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { decodeJwt, SignJWT } from 'jose';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DASHBOARD_CSP, DASHBOARD_DIR } from '../../src/http/dashboard.ts';
import { startTestGateway, TEST_ADMIN_PASSWORD, type TestGateway } from '../../src/testing/gateway.ts';
import { hasChromium, launchChromium } from '../support/browser.ts';

const MODELS = ['sentiment-echo', 'summarize-echo'];
/** PALETTE of dashboard/src/charts.ts: the line colours (axes and grid are grey and black). */
const LINE_COLOURS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#17becf', '#8c564b', '#e377c2'].map((c) =>
  [1, 3, 5].map((i) => parseInt(c.slice(i, i + 2), 16)),
);
const BUNDLE_LIMIT_GZIP = 150 * 1024;
/** Issuer of the short-lived tokens the session-expiry test signs (for the jwt strategy of its gateway). */
const SHORT_ISSUER = 'dashboard-test';

// The two suites run side by side (each test has its own gateway, or none): the browser one's gateway and Chromium
// start while the route test runs.
describe.concurrent('dashboard bundle and route', () => {
  it('is built (npm install / npm run build) and under 150 KB gzipped', ({ expect }) => {
    expect(existsSync(join(DASHBOARD_DIR, 'index.html'))).toBe(true);
    const files = ['index.html', ...readdirSync(join(DASHBOARD_DIR, 'assets')).map((f) => `assets/${f}`)];
    const gzipped = files.reduce((n, f) => n + gzipSync(readFileSync(join(DASHBOARD_DIR, f))).length, 0);
    expect(gzipped).toBeGreaterThan(1000);
    expect(gzipped).toBeLessThan(BUNDLE_LIMIT_GZIP);
    // Offline: no absolute URL to another host in the page or its scripts.
    const html = readFileSync(join(DASHBOARD_DIR, 'index.html'), 'utf8');
    expect(html).not.toMatch(/(src|href)="https?:/);
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
  });

  it('serves the public page with a strict CSP; its data needs a token', async ({ expect }) => {
    const gw = await startTestGateway({ defaultPlugins: false, plugins: [{ use: 'p2c-ewma' }], auth: {} });
    try {
      const page = await fetch(`${gw.url}/dashboard`);
      expect(page.status).toBe(200);
      expect(page.headers.get('content-type')).toMatch(/^text\/html/);
      expect(page.headers.get('content-security-policy')).toBe(DASHBOARD_CSP);
      expect(DASHBOARD_CSP).toContain("script-src 'self'");
      expect(DASHBOARD_CSP).toContain("connect-src 'self'");
      const html = await page.text();
      const script = /src="(\/dashboard\/assets\/[^"]+\.js)"/.exec(html)?.[1];
      expect(script).toBeDefined();
      const js = await fetch(`${gw.url}${script}`, { headers: { 'accept-encoding': 'gzip' } });
      expect(js.status).toBe(200);
      expect(js.headers.get('cache-control')).toContain('immutable');
      expect((await fetch(`${gw.url}/dashboard/assets/nope.js`)).status).toBe(404);
      expect((await fetch(`${gw.url}/dashboard/../package.json`)).status).toBe(404);
      expect((await fetch(`${gw.url}/dashboard/index.html`, { method: 'POST' })).status).toBe(404);
      const anonymous = await fetch(`${gw.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: '{ metrics(window: 60) { step } }' }),
      });
      expect(anonymous.status).toBe(401);
    } finally {
      await gw.close();
    }
  }, 60_000);
});

/** Pixels of the chart's canvas drawn in one of the line colours. */
async function linePixels(page: Page, chart: string): Promise<number> {
  return page.evaluate(
    ([id, colours]) => {
      const canvas = document.querySelector<HTMLCanvasElement>(`[data-chart="${id as string}"] canvas`);
      if (!canvas) return 0;
      const { data } = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height);
      const near = (i: number, [r, g, b]: number[]) => Math.abs(data[i]! - r!) < 24 && Math.abs(data[i + 1]! - g!) < 24 && Math.abs(data[i + 2]! - b!) < 24;
      let n = 0;
      for (let i = 0; i < data.length; i += 4) if (data[i + 3]! > 200 && (colours as number[][]).some((c) => near(i, c))) n++;
      return n;
    },
    [chart, LINE_COLOURS] as const,
  );
}

const chartPoints = (page: Page, chart: string) => page.locator(`[data-chart="${chart}"]`).getAttribute('data-points').then(Number);

// .ci/run installs Debian's chromium; a developer machine without it skips this part.
describe.skipIf(!hasChromium).concurrent('dashboard in a real browser', () => {
  let gw: TestGateway;
  let browser: Browser;
  let launched: Promise<Browser> | undefined;
  let auth: Record<string, string>;
  let traffic = true;
  let sent = 0;
  let trafficDone: Promise<void> = Promise.resolve();

  beforeAll(async () => {
    // Chromium starts while the gateway does.
    launched = launchChromium();
    launched.catch(() => undefined);
    gw = await startTestGateway({
      auth: {},
      alerts: { evaluation: { intervalMs: 500 } },
      plugins: [{ use: './examples/capibara-plugin-echo', options: { prefix: 'echo: ' } }],
    });
    auth = await gw.login();
    for (const id of MODELS) {
      const r = await gw.gql(
        `mutation { registerModel(input: { id: "${id}", task: GENERATE, versions: [{ version: "v1", instances: [{ backend: "echo" }] }] }) { id } }`,
        {},
        auth,
      );
      expect(r.errors).toBeUndefined();
    }
    browser = await launched;
  }, 60_000);
  afterAll(async () => {
    traffic = false;
    await trafficDone;
    // The browser even when the gateway did not start (beforeAll ended before awaiting it).
    await (browser ?? (await launched?.catch(() => undefined)))?.close();
    await gw?.close();
  });

  it.concurrent(
    'signs in through the form, lists the models and charts live traffic',
    async ({ expect }) => {
      const page = await browser.newPage({ viewport: { width: 1280, height: 1500 } });
      const external: string[] = [];
      const urls: string[] = [];
      const problems: string[] = [];
      page.on('request', (r) => {
        urls.push(r.url());
        if (!r.url().startsWith(gw.url) && !r.url().startsWith(gw.url.replace('http', 'ws')) && !r.url().startsWith('data:')) external.push(r.url());
      });
      page.on('console', (m) => {
        if (m.type() === 'error' && !/401|Unauthorized/.test(m.text())) problems.push(m.text());
      });
      page.on('pageerror', (e) => problems.push(e.message));
      // Alerts come from the alertEvents subscription: the list is read when an event arrives, not polled.
      let alertReads = 0;
      let alertEvents = 0;
      let alertSubscribed = false;
      page.on('request', (r) => {
        if (r.method() === 'POST' && r.postData()?.includes('alerts(state')) alertReads++;
      });
      page.on('websocket', (ws) => {
        ws.on('framesent', (f) => {
          if (typeof f.payload === 'string' && f.payload.includes('alertEvents')) alertSubscribed = true;
        });
        ws.on('framereceived', (f) => {
          if (typeof f.payload === 'string' && f.payload.includes('"alertEvents"')) alertEvents++;
        });
      });

      await page.goto(`${gw.url}/dashboard`);
      await page.locator('#login').waitFor({ state: 'visible', timeout: 20_000 });
      // A wrong password is refused with the API's message, and the form stays.
      await page.fill('input[name=username]', 'admin');
      await page.fill('input[name=password]', 'not-the-password');
      await page.click('#login button[type=submit]');
      await page.waitForFunction(() => document.getElementById('login-error')!.textContent !== '', undefined, { timeout: 20_000 });
      expect(await page.locator('#app').isHidden()).toBe(true);

      await page.fill('input[name=password]', TEST_ADMIN_PASSWORD);
      await page.click('#login button[type=submit]');
      for (const id of MODELS) await page.locator(`#models tr[data-model="${id}"]`).first().waitFor({ timeout: 30_000 });
      const rows = await page.locator('#models td.model').allTextContents();
      expect(new Set(rows)).toEqual(new Set(MODELS));

      // Traffic on both models, one request at a time, until the test ends.
      trafficDone = (async () => {
        for (let i = 0; traffic && i < 5000; i++) {
          const model = MODELS[i % MODELS.length]!;
          await gw.gql(`mutation { infer(model: "${model}", input: { prompt: "hello ${i}" }) { text } }`, {}, auth).catch(() => undefined);
          sent++;
          await new Promise((r) => setTimeout(r, 40));
        }
      })();

      // A rule that fires while the traffic flows.
      const rule = {
        name: 'sentiment-busy',
        kind: 'threshold',
        metric: 'requests_per_second',
        match: { model: 'sentiment-echo' },
        op: '>',
        value: 0,
        windowMs: 3000,
        severity: 'critical',
        groupBy: [],
      };
      const created = await gw.gql('mutation($r: JSON!) { createAlertRule(rule: $r) { name } }', { r: rule }, auth);
      expect(created.errors).toBeUndefined();

      // The throughput chart gets a line per model, and points keep arriving over the subscription.
      await page.waitForFunction(
        (models) => {
          const el = document.querySelector('[data-chart="throughput"]');
          const lines = el?.getAttribute('data-lines')?.split('|') ?? [];
          return models.every((m) => lines.includes(m)) && Number(el?.getAttribute('data-points')) >= 4;
        },
        MODELS,
        { timeout: 60_000 },
      );
      const before = await chartPoints(page, 'throughput');
      await page.waitForFunction((n) => Number(document.querySelector('[data-chart="throughput"]')?.getAttribute('data-points')) >= n + 3, before, {
        timeout: 30_000,
      });
      expect(sent).toBeGreaterThan(0);
      const latest = await page.locator('[data-chart="throughput"] .latest').textContent();
      expect(latest).toMatch(/sentiment-echo: [0-9.]+/);
      expect(Number(/sentiment-echo: ([0-9.]+)/.exec(latest ?? '')?.[1])).toBeGreaterThan(0);
      const latencyLines = (await page.locator('[data-chart="latency"]').getAttribute('data-lines'))?.split('|') ?? [];
      expect(latencyLines).toContain('sentiment-echo p95');

      // Non-blank charts: lines are drawn on the canvas (a flat line at 0 would count too: throughput is > 0 here).
      expect(await linePixels(page, 'throughput')).toBeGreaterThan(30);
      expect(await linePixels(page, 'latency')).toBeGreaterThan(30);
      // The history view (GraphQL `metrics`) has points too.
      await page.click('#history-window');
      await page.selectOption('#history-window', '900');
      await page.waitForFunction(() => /[1-9]\d* points/.test(document.getElementById('history-note')?.textContent ?? ''), undefined, { timeout: 30_000 });

      // The alert shows up in the list (read again on its alertEvents event) with its severity.
      const alertRow = page.locator('#alerts li[data-alert="sentiment-busy"]');
      await alertRow.waitFor({ timeout: 60_000 });
      expect(await alertRow.getAttribute('class')).toContain('severity-critical');
      expect(alertSubscribed).toBe(true);
      expect(alertEvents).toBeGreaterThan(0);
      // No polling: over 4 s the list is read at most once per event received (it was read every 2 s before).
      const [reads0, events0] = [alertReads, alertEvents];
      await new Promise((r) => setTimeout(r, 4000));
      expect(alertReads - reads0).toBeLessThanOrEqual(alertEvents - events0);

      const shotDir = mkdtempSync(join(tmpdir(), 'dashboard-'));
      const shot = join(shotDir, 'dashboard.png');
      await page.screenshot({ path: shot, fullPage: true });
      expect(readFileSync(shot).subarray(1, 4).toString()).toBe('PNG');
      // DASHBOARD_SCREENSHOT=docs/dashboard.png refreshes the README's picture.
      if (process.env.DASHBOARD_SCREENSHOT) copyFileSync(shot, process.env.DASHBOARD_SCREENSHOT);

      // Acknowledged, then silenced: the alert leaves the list while it is still firing.
      await alertRow.locator('button', { hasText: 'Acknowledge' }).click();
      await page.waitForFunction(() => document.querySelector('#alerts li[data-alert="sentiment-busy"]')?.textContent?.includes('acknowledged by'), undefined, {
        timeout: 20_000,
      });
      await alertRow.locator('button', { hasText: 'Silence' }).click();
      await alertRow.waitFor({ state: 'detached', timeout: 20_000 });
      const firing = await gw.gql<{ alerts: { rule: string; silencedUntil: string | null }[] }>('{ alerts(state: [FIRING]) { rule silencedUntil } }', {}, auth);
      const busy = firing.data?.alerts.find((a) => a.rule === 'sentiment-busy');
      expect(busy?.silencedUntil).toBeTruthy();

      // No token in any URL, nothing fetched from another origin, no script error (a CSP violation included).
      expect(urls.filter((u) => /eyJ|mcp_rt_|token=/.test(u))).toEqual([]);
      expect(external).toEqual([]);
      expect(problems).toEqual([]);
      expect(await page.evaluate(() => localStorage.length)).toBe(0);

      // Sign out: back to the form, the tab's refresh token gone.
      await page.click('#logout');
      await page.locator('#login').waitFor({ state: 'visible', timeout: 10_000 });
      expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
      await page.close();
    },
    180_000,
  );

  // Runs beside the test above (its own gateway and page): most of its time is waiting for a token to expire.
  it.concurrent(
    'refreshes the session before the access token expires; live updates go on past its expiry',
    async ({ expect }) => {
      // The password plugin's access tokens live at least 30 s. The first session here gets a 10 s token instead,
      // signed by the test for the jwt strategy beside it (same user and roles): the dashboard refreshes it at
      // 80% of its lifetime with the real refresh token, and the server ends the live updates it opened at its expiry.
      const secret = randomBytes(32).toString('hex');
      const short = await startTestGateway({
        auth: {},
        plugins: [
          { use: './examples/capibara-plugin-echo', options: { prefix: 'echo: ' } },
          { use: 'jwt', options: { algorithms: ['HS256'], secret, issuer: SHORT_ISSUER, audience: 'capibara-mcp', clockToleranceSec: 0, rolesClaim: 'roles' } },
        ],
      });
      const page = await browser.newPage();
      try {
        const TTL = 10;
        let firstExpiresAt = 0;
        let firstToken = '';
        await page.route(`${short.url}/api/v1/auth/login`, async (route) => {
          const res = await route.fetch();
          const body = (await res.json()) as { access_token?: string; expires_in?: number };
          if (res.status() === 200 && body.access_token) {
            const real = decodeJwt(body.access_token);
            const now = Math.floor(Date.now() / 1000);
            firstExpiresAt = (now + TTL) * 1000;
            body.access_token = await new SignJWT({ roles: real.roles })
              .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
              .setIssuer(SHORT_ISSUER)
              .setAudience('capibara-mcp')
              .setSubject(real.sub!)
              .setIssuedAt(now)
              .setExpirationTime(now + TTL)
              .sign(new TextEncoder().encode(secret));
            body.expires_in = TTL;
            firstToken = body.access_token;
          }
          await route.fulfill({ response: res, json: body });
        });
        const refreshed: number[] = [];
        /** When the browser sent each refresh (its own clock, so a busy test process does not shift it). */
        const refreshSentAt: number[] = [];
        page.on('response', (r) => {
          if (r.url() !== `${short.url}/api/v1/auth/refresh`) return;
          refreshed.push(r.status());
          refreshSentAt.push(r.request().timing().startTime);
        });
        await page.goto(`${short.url}/dashboard`);
        await page.fill('input[name=username]', 'admin');
        await page.fill('input[name=password]', TEST_ADMIN_PASSWORD);
        await page.click('#login button[type=submit]');
        await page.locator('#app').waitFor({ state: 'visible', timeout: 30_000 });
        // Refreshed at 80% of the 10 s lifetime; snapshots still arrive after the first token expired.
        await page.waitForFunction(() => Number(document.querySelector('[data-chart="throughput"]')?.getAttribute('data-points')) >= 1, undefined, {
          timeout: 30_000,
        });
        expect(firstExpiresAt).toBeGreaterThan(0);
        await expect.poll(() => refreshed, { timeout: 20_000, interval: 250 }).toEqual([200]);
        // Sent while the first token was still valid, after 80% of its lifetime (whole seconds: `iat` is rounded down).
        expect(refreshSentAt[0]).toBeGreaterThan(firstExpiresAt - TTL * 1000 + 0.8 * TTL * 1000 - 1000);
        expect(refreshSentAt[0]).toBeLessThan(firstExpiresAt);
        await new Promise((r) => setTimeout(r, Math.max(0, firstExpiresAt + 1000 - Date.now())));
        // The first token is refused now; the dashboard's live updates go on with the refreshed one.
        const stale = await fetch(`${short.url}/graphql`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${firstToken}` },
          body: JSON.stringify({ query: '{ metrics(window: 60) { step } }' }),
        });
        expect(stale.status).toBe(401);
        const after = await chartPoints(page, 'throughput');
        await page.waitForFunction((n) => Number(document.querySelector('[data-chart="throughput"]')?.getAttribute('data-points')) >= n + 2, after, {
          timeout: 20_000,
        });
        expect(await page.locator('#login').isHidden()).toBe(true);
      } finally {
        await page.close();
        await short.close();
      }
    },
    150_000,
  );
});
