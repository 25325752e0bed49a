import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';
import { hasChromium, launchChromium } from '../support/browser.ts';

// .ci/run installs Debian's chromium; a developer machine without it skips this file.
describe.skipIf(!hasChromium)('GraphiQL playground in a real browser', () => {
  let gw: TestGateway;
  let browser: Browser;
  beforeAll(async () => {
    gw = await startTestGateway({ plugins: [{ use: './examples/capibara-plugin-echo', options: { prefix: 'echo: ' } }] });
    await gw.gql('mutation { registerModel(input: { id: "play", task: GENERATE, versions: [{ version: "v1", instances: [{ backend: "echo" }] }] }) { id } }');
    browser = await launchChromium();
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await gw?.close();
  });

  it('loads offline (no CDN) and runs the mutation in its editor', async () => {
    const page = await browser.newPage();
    const external: string[] = [];
    page.on('request', (r) => {
      if (!r.url().startsWith(gw.url) && !r.url().startsWith('blob:') && !r.url().startsWith('data:')) external.push(r.url());
    });
    const query = 'mutation { infer(model: "play", input: { prompt: "hello from the browser" }) { text model } }';
    // The editor is ready once GraphiQL has fetched the schema (introspection POST).
    const introspected = page.waitForResponse((r) => r.url() === `${gw.url}/graphql` && r.request().method() === 'POST', { timeout: 30_000 });
    await page.goto(`${gw.url}/graphql?query=${encodeURIComponent(query)}`);
    await introspected;
    await page.locator('.graphiql-execute-button').click({ timeout: 20_000 });
    // Monaco renders spaces as no-break spaces: compare with white space folded.
    await page.waitForFunction(() => document.body.innerText.replace(/\s/g, ' ').includes('echo: hello from the browser'), undefined, { timeout: 20_000 });
    expect(await page.title()).toBe('Capibara MCP');
    expect(external).toEqual([]);
  }, 60_000);
});
