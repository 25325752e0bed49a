/**
 * Memory exhaustion before any auth check: distinct large GraphQL documents used to fill Yoga's
 * parse cache (bounded by entry count: about 20 distinct 4 MB documents killed the process; with
 * the api-key plugin on and no key, 4 documents took RSS from 304 to 1,160 MB). Now the parser
 * stops at the token limit and the cache is bounded in bytes: the flood keeps RSS bounded and
 * the gateway answers.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateApiKey } from '../../plugins/auth-api-key/index.ts';
import { ByteLru } from '../../src/graphql/document-cache.ts';
import { startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';

const MB = 1024 * 1024;
/** RSS may grow at most this much over the baseline during the flood. */
const RSS_BOUND = 300 * MB;

describe('the parse cache is bounded in bytes', () => {
  it('ByteLru evicts the oldest entries past its byte budget and never keeps an entry over the per-entry bound', () => {
    const lru = new ByteLru<number>(100, 40);
    lru.set('a'.repeat(41), 1);
    expect(lru.size).toBe(0);
    for (let i = 0; i < 10; i++) lru.set(`${i}`.repeat(30), i);
    expect(lru.bytes).toBeLessThanOrEqual(100);
    expect(lru.size).toBe(3);
    expect(lru.get('9'.repeat(30))).toBe(9);
    expect(lru.get('0'.repeat(30))).toBeUndefined();
    // A read refreshes recency: 7 survives the next insertion, 8 goes.
    lru.get('7'.repeat(30));
    lru.set('x'.repeat(30), 42);
    expect(lru.get('7'.repeat(30))).toBe(7);
    expect(lru.get('8'.repeat(30))).toBeUndefined();
  });
});

describe('distinct ~4 MB documents, auth on and no key', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    const key = generateApiKey();
    gw = await startTestGateway({
      auth: { enabled: true },
      plugins: [{ use: 'api-key', options: { keys: [{ id: 'admin', sha256: key.sha256, roles: ['admin'] }] } }],
    });
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('40 documents sent one after another keep RSS under baseline + 300 MB, are refused with 4xx, and the gateway stays up', async () => {
    const limit = gw.config.server.maxBodyBytes;
    expect(limit).toBe(4 * MB);
    const documents = (i: number): string => {
      // Alternate: a huge selection (millions of tokens) and a huge string literal (few tokens, a 4 MB AST node).
      const filler = i % 2 === 0 ? `f${i} `.repeat(Math.floor((3.9 * MB) / (String(i).length + 2))) : `x`.repeat(3.9 * MB);
      return i % 2 === 0 ? `query Q${i} { ${filler} }` : `query Q${i} { model(id: "${filler}") { id } }`;
    };
    // Baseline after a warm-up request, with a GC when exposed.
    await gw.gql('{ __typename }');
    (globalThis as { gc?: () => void }).gc?.();
    const base = process.memoryUsage().rss;
    let peak = base;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    try {
      for (let i = 0; i < 40; i++) {
        const body = JSON.stringify({ query: documents(i) });
        expect(Buffer.byteLength(body)).toBeLessThan(limit);
        const r = await fetch(`${gw.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
        expect(r.status, `document ${i}`).toBeGreaterThanOrEqual(400);
        expect(r.status, `document ${i}`).toBeLessThan(500);
        await r.arrayBuffer();
        peak = Math.max(peak, process.memoryUsage().rss);
      }
    } finally {
      clearInterval(sampler);
    }
    expect(peak - base, `RSS ${Math.round(base / MB)} → peak ${Math.round(peak / MB)} MB`).toBeLessThan(RSS_BOUND);
    const health = await fetch(`${gw.url}/healthz`);
    expect(health.status).toBe(200);
    // The body limit still holds: one byte over 4 MiB is 413.
    const over = await fetch(`${gw.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: `{ ${'a'.repeat(limit)} }` }),
    });
    expect(over.status).toBe(413);
  }, 180_000);
});
