/**
 * GraphQL over WebSocket under attack, with a real graphql-ws client and raw `ws` sockets on
 * loopback: credentials checked at connection_init (4401), foreign Origins refused at the
 * handshake (the setShadow from a foreign page), sockets per IP and per principal capped,
 * subscriptions and operations in flight per socket capped (20,000 subscriptions on one socket),
 * heavy operations over one socket do not stall /healthz, and subscriptions end when the
 * principal's credentials expire.
 */
import { fileURLToPath } from 'node:url';
import { createClient, type Client } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { generateApiKey } from '../../plugins/auth-api-key/index.ts';
import { startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';
import { startStack, type Stack } from '../entrypoints/harness.ts';

const PROTOCOL = 'graphql-transport-ws';
const EXPIRING_AUTH = fileURLToPath(new URL('../support/header-auth-plugin.ts', import.meta.url));

const wsUrl = (gw: { url: string }) => `${gw.url.replace('http', 'ws')}/graphql`;

type Message = { type: string; id?: string; payload?: unknown };

/** A raw graphql-transport-ws socket: the messages received, the close code, helpers to wait. */
class RawSocket {
  readonly messages: Message[] = [];
  /** Messages received by type. */
  readonly counts: Record<string, number> = {};
  closeCode: number | undefined;
  handshakeStatus: number | undefined;
  private readonly waiters = new Set<() => void>();
  readonly ws: WebSocket;

  constructor(url: string, headers: Record<string, string> = {}) {
    this.ws = new WebSocket(url, PROTOCOL, { headers });
    this.ws.on('open', () => this.poke());
    this.ws.on('message', (d) => {
      const m = JSON.parse(String(d)) as Message;
      this.messages.push(m);
      this.counts[m.type] = (this.counts[m.type] ?? 0) + 1;
      this.poke();
    });
    this.ws.on('close', (code) => {
      this.closeCode = code;
      this.poke();
    });
    this.ws.on('unexpected-response', (_req, res) => {
      this.handshakeStatus = res.statusCode;
      this.closeCode = -1;
      this.ws.terminate();
      this.poke();
    });
    this.ws.on('error', () => this.poke());
  }

  private poke() {
    for (const w of this.waiters) w();
  }

  /** Waits until `cond` holds (checked on every event), at most `ms`. */
  until(cond: () => boolean, ms = 10_000, what = 'condition'): Promise<void> {
    if (cond()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!cond()) return;
        clearTimeout(t);
        this.waiters.delete(check);
        resolve();
      };
      const t = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`timed out waiting for ${what}; close ${this.closeCode}, ${this.messages.length} messages`));
      }, ms);
      this.waiters.add(check);
    });
  }

  async open(): Promise<void> {
    await this.until(() => this.ws.readyState === WebSocket.OPEN || this.closeCode !== undefined, 10_000, 'open');
  }

  send(m: Message): void {
    this.ws.send(JSON.stringify(m));
  }

  /** Opens, sends connection_init, and waits for the ack or the close. */
  async init(payload: Record<string, unknown> = {}): Promise<'ack' | number> {
    await this.open();
    if (this.closeCode !== undefined) return this.closeCode;
    this.send({ type: 'connection_init', payload });
    await this.until(() => this.closeCode !== undefined || this.messages.some((m) => m.type === 'connection_ack'), 10_000, 'ack');
    return this.messages.some((m) => m.type === 'connection_ack') ? 'ack' : this.closeCode!;
  }

  byId(id: string): Message[] {
    return this.messages.filter((m) => m.id === id);
  }

  close(): void {
    this.ws.terminate();
  }
}

function errorCode(m: Message | undefined): unknown {
  const p = m?.payload as Array<{ extensions?: { code?: string } }> | { errors?: Array<{ extensions?: { code?: string } }> } | undefined;
  return Array.isArray(p) ? p[0]?.extensions?.code : p?.errors?.[0]?.extensions?.code;
}

/** Runs one query with a graphql-ws client; resolves with the result or the close/error. */
function query(client: Client, q: string): Promise<unknown> {
  return new Promise((resolve) => {
    let result: unknown;
    client.subscribe({ query: q }, { next: (v) => (result = v), error: (e) => resolve({ error: e }), complete: () => resolve(result) });
  });
}

describe('WebSocket authentication and Origin (api-key auth on)', () => {
  let gw: TestGateway;
  const admin = generateApiKey();
  const viewer = generateApiKey();
  beforeAll(async () => {
    gw = await startTestGateway({
      auth: { enabled: true },
      plugins: [
        {
          use: 'api-key',
          options: {
            keys: [
              { id: 'admin', sha256: admin.sha256, roles: ['admin'] },
              { id: 'viewer', sha256: viewer.sha256, roles: ['viewer'] },
            ],
          },
        },
      ],
      models: [{ id: 'victim', task: 'generate' }],
      server: { websocket: { maxSocketsPerPrincipal: 2 } },
    });
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('connection_init without credentials or with a wrong key is closed with 4401; a valid key is acknowledged', async () => {
    for (const payload of [{}, { authorization: 'Bearer mcp_sk_wrong' }, { authorization: `Bearer ${generateApiKey().key}` }]) {
      const s = new RawSocket(wsUrl(gw));
      expect(await s.init(payload), JSON.stringify(Object.keys(payload))).toBe(4401);
    }
    const ok = new RawSocket(wsUrl(gw));
    expect(await ok.init({ authorization: `Bearer ${admin.key}` })).toBe('ack');
    ok.send({ id: '1', type: 'subscribe', payload: { query: '{ model(id: "victim") { id } }' } });
    await ok.until(() => ok.byId('1').some((m) => m.type === 'complete'));
    expect(ok.byId('1')[0]).toMatchObject({ type: 'next', payload: { data: { model: { id: 'victim' } } } });
    ok.close();
  });

  it('the graphql-ws client: rejected without a key (4401, no retry), works with one', async () => {
    const anonymous = createClient({ url: wsUrl(gw), webSocketImpl: WebSocket, retryAttempts: 0, lazy: true });
    const refused = (await query(anonymous, '{ __typename }')) as { error?: { code?: number } };
    expect(refused.error?.code).toBe(4401);
    await anonymous.dispose();
    const client = createClient({
      url: wsUrl(gw),
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      lazy: true,
      connectionParams: { authorization: `Bearer ${admin.key}` },
    });
    expect(await query(client, '{ model(id: "victim") { id } }')).toEqual({ data: { model: { id: 'victim' } } });
    await client.dispose();
  });

  it('a foreign Origin is refused at the handshake (403), even with a valid key; same origin and no Origin are accepted', async () => {
    const foreign = new RawSocket(wsUrl(gw), { origin: 'https://evil.example' });
    await foreign.open();
    await foreign.until(() => foreign.closeCode !== undefined);
    expect(foreign.handshakeStatus).toBe(403);
    const same = new RawSocket(wsUrl(gw), { origin: gw.url });
    expect(await same.init({ authorization: `Bearer ${admin.key}` })).toBe('ack');
    same.close();
  });

  it('sockets per principal are capped (4429 past the cap)', async () => {
    const held = [new RawSocket(wsUrl(gw)), new RawSocket(wsUrl(gw))];
    for (const s of held) expect(await s.init({ authorization: `Bearer ${viewer.key}` })).toBe('ack');
    const third = new RawSocket(wsUrl(gw));
    expect(await third.init({ authorization: `Bearer ${viewer.key}` })).toBe(4429);
    held[0]!.close();
    await new Promise((r) => setTimeout(r, 200));
    const again = new RawSocket(wsUrl(gw));
    expect(await again.init({ authorization: `Bearer ${viewer.key}` })).toBe('ack');
    again.close();
    held[1]!.close();
  });
});

describe('WebSocket caps (auth off: anonymous admin, the worst case)', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({
      auth: { enabled: false },
      models: [{ id: 'victim', task: 'generate', defaultVersion: 'v1', versions: [{ version: 'v1' }, { version: 'v2' }] }],
      server: { corsOrigins: ['https://app.example'], websocket: { maxSocketsPerIp: 4, maxSubscriptionsPerSocket: 100 } },
    });
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('a foreign Origin cannot run setShadow over a WebSocket; a listed origin can connect', async () => {
    const foreign = new RawSocket(wsUrl(gw), { origin: 'https://evil.example' });
    await foreign.open();
    expect(foreign.handshakeStatus).toBe(403);
    const routing = await gw.gql<{ model: { routing: { shadow?: unknown } } }>('{ model(id: "victim") { routing } }');
    expect(JSON.stringify(routing.data?.model.routing ?? {})).not.toMatch(/v2/);
    const listed = new RawSocket(wsUrl(gw), { origin: 'https://app.example' });
    expect(await listed.init()).toBe('ack');
    listed.close();
  });

  it('sockets per IP are capped: the handshake past the cap is refused with 429', async () => {
    const held = Array.from({ length: 4 }, () => new RawSocket(wsUrl(gw)));
    try {
      for (const s of held) expect(await s.init()).toBe('ack');
      const extra = new RawSocket(wsUrl(gw));
      await extra.open();
      await extra.until(() => extra.closeCode !== undefined);
      expect(extra.handshakeStatus).toBe(429);
    } finally {
      for (const s of held) s.close();
    }
    await new Promise((r) => setTimeout(r, 200));
  });

  it('20,000 subscriptions on one socket: 100 are set up, the rest refused (MCP_RATE_LIMITED); memory stays bounded; the socket still works', async () => {
    const s = new RawSocket(wsUrl(gw));
    expect(await s.init()).toBe('ack');
    const base = process.memoryUsage().rss;
    const N = 20_000;
    for (let i = 0; i < N; i++) s.send({ id: `s${i}`, type: 'subscribe', payload: { query: 'subscription { modelEvents { modelId } }' } });
    await s.until(() => (s.counts.error ?? 0) >= N - 100, 60_000, 'the refusals');
    const errors = s.messages.filter((m) => m.type === 'error');
    expect(errors.length).toBe(N - 100);
    expect(new Set(errors.map(errorCode))).toEqual(new Set(['MCP_RATE_LIMITED']));
    expect(process.memoryUsage().rss - base).toBeLessThan(300 * 1024 * 1024);
    // The 100 open ones receive events.
    await gw.gql('mutation { updateModel(id: "victim", input: { description: "changed" }) { id } }');
    await s.until(() => (s.counts.next ?? 0) >= 100, 20_000, 'events on the open subscriptions');
    // Completing one frees a slot.
    s.send({ id: 's0', type: 'complete' });
    await new Promise((r) => setTimeout(r, 100));
    s.send({ id: 'again', type: 'subscribe', payload: { query: 'subscription { modelEvents { modelId } }' } });
    await new Promise((r) => setTimeout(r, 300));
    expect(s.byId('again').filter((m) => m.type === 'error')).toEqual([]);
    s.close();
  }, 120_000);
});

describe('operations in flight per socket, and /healthz while one socket works hard', () => {
  let s: Stack;
  beforeAll(async () => {
    s = await startStack({ auth: { enabled: false }, server: { websocket: { maxOperationsInFlight: 8 } } });
  });
  afterAll(async () => {
    await s?.close();
  });

  it('20 slow inferences over one socket: 8 run, 12 are refused at once', async () => {
    s.openai.setBehavior({ tokens: ['a', 'b', 'c', 'd'], delayMs: 1000 });
    const ws = new RawSocket(wsUrl(s.gw));
    expect(await ws.init()).toBe('ack');
    for (let i = 0; i < 20; i++) {
      ws.send({ id: `q${i}`, type: 'subscribe', payload: { query: 'mutation { infer(model: "gen-model", input: { prompt: "hi" }) { text } }' } });
    }
    await ws.until(() => ws.messages.filter((m) => m.type === 'complete' || m.type === 'error').length >= 20, 30_000, 'all answers');
    const refused = ws.messages.filter((m) => m.type === 'error');
    expect(refused.length).toBe(12);
    expect(new Set(refused.map(errorCode))).toEqual(new Set(['MCP_RATE_LIMITED']));
    const answered = ws.messages.filter((m) => m.type === 'next');
    expect(answered.map((m) => (m.payload as { data: { infer: { text: string } } }).data.infer.text)).toEqual(Array(8).fill('abcd'));
    ws.close();
  });

  it('50 heavy operations over one socket do not stall /healthz', async () => {
    s.openai.setBehavior({ tokens: ['a'], tokenDelayMs: 0 });
    const heavy = `{ ${Array.from({ length: 30 }, (_, i) => `a${i}: models(first: 500) { nodes { id name description task versions { version instances { id status } } } }`).join(' ')} }`;
    const ws = new RawSocket(wsUrl(s.gw));
    expect(await ws.init()).toBe('ack');
    let worst = 0;
    let done = false;
    const probe = (async () => {
      while (!done) {
        const t = performance.now();
        const r = await fetch(`${s.gw.url}/healthz`);
        await r.arrayBuffer();
        worst = Math.max(worst, performance.now() - t);
        await new Promise((r2) => setTimeout(r2, 20));
      }
    })();
    for (let i = 0; i < 50; i++) ws.send({ id: `h${i}`, type: 'subscribe', payload: { query: heavy } });
    await ws.until(() => ws.messages.filter((m) => m.type === 'complete' || m.type === 'error').length >= 50, 60_000, 'all answers');
    done = true;
    await probe;
    // Each answered either with data or refused (cost or in-flight cap); /healthz never waited seconds (it was 18.5 s).
    expect(worst).toBeLessThan(2000);
    ws.close();
  });
});

describe('subscriptions end when the credentials expire', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({
      auth: { enabled: true },
      plugins: [{ use: EXPIRING_AUTH, options: { defaultUser: null } }],
      models: [{ id: 'victim', task: 'generate' }],
    });
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('already expired credentials are refused at connection_init (4401)', async () => {
    const s = new RawSocket(wsUrl(gw));
    expect(await s.init({ 'x-test-user': 'alice', 'x-test-expires-at': String(Date.now() - 1000) })).toBe(4401);
  });

  it('at expiresAt, the open subscription gets an MCP_UNAUTHENTICATED error and completes; the socket closes with 4401', async () => {
    const expiresAt = Date.now() + 1500;
    const s = new RawSocket(wsUrl(gw));
    expect(await s.init({ 'x-test-user': 'alice', 'x-test-expires-at': String(expiresAt) })).toBe('ack');
    s.send({ id: 'events', type: 'subscribe', payload: { query: 'subscription { modelEvents { modelId } }' } });
    await new Promise((r) => setTimeout(r, 200));
    await gw.gql('mutation { updateModel(id: "victim", input: { description: "before expiry" }) { id } }', undefined, { 'x-test-user': 'bob' });
    await s.until(() => s.byId('events').some((m) => m.type === 'next'), 5000, 'an event before expiry');
    await s.until(() => s.byId('events').some((m) => m.type === 'complete'), 5000, 'the subscription to end');
    expect(Date.now()).toBeGreaterThanOrEqual(expiresAt);
    const msgs = s.byId('events');
    expect(msgs.at(-2)?.type).toBe('next');
    expect(errorCode(msgs.at(-2))).toBe('MCP_UNAUTHENTICATED');
    await s.until(() => s.closeCode !== undefined, 5000, 'the close');
    expect(s.closeCode).toBe(4401);
  });

  /** Subscribes over SSE as carol with credentials expiring at `expiresAt`; the whole stream once it ends, and its data frames. */
  async function sseUntilExpiry<T>(query: string, expiresAt: number, timeoutMs: number): Promise<{ text: string; data: T[] }> {
    const r = await fetch(`${gw.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', 'x-test-user': 'carol', 'x-test-expires-at': String(expiresAt) },
      body: JSON.stringify({ query }),
      signal: AbortSignal.timeout(timeoutMs),
    });
    expect(r.status).toBe(200);
    const text = await r.text();
    expect(Date.now()).toBeGreaterThanOrEqual(expiresAt);
    const data = text
      .split('\n')
      .filter((l) => l.startsWith('data: {'))
      .map((l) => JSON.parse(l.slice(6)) as T);
    return { text, data };
  }

  it('a subscription over SSE ends the same way at expiresAt', async () => {
    const expiresAt = Date.now() + 1500;
    const { text, data } = await sseUntilExpiry<{ errors?: Array<{ extensions?: { code?: string } }> }>(
      'subscription { modelEvents { modelId } }',
      expiresAt,
      10_000,
    );
    expect(data.at(-1)?.errors?.[0]?.extensions?.code).toBe('MCP_UNAUTHENTICATED');
    expect(text).toMatch(/event: complete/);
  });
  it('metricsUpdates over SSE (snapshots written by the shared path) ends the same way at expiresAt', async () => {
    const expiresAt = Date.now() + 2500;
    const { text, data } = await sseUntilExpiry<{ data?: { metricsUpdates: { at: number } }; errors?: Array<{ extensions?: { code?: string } }> }>(
      'subscription { metricsUpdates(intervalMs: 250) { at } }',
      expiresAt,
      15_000,
    );
    // Snapshots (one per tick, 1 s by default) before the expiry, none after it: the error, then complete.
    expect(data.filter((d) => d.data).length).toBeGreaterThanOrEqual(1);
    expect(data.filter((d) => d.data).every((d) => d.data!.metricsUpdates.at <= expiresAt)).toBe(true);
    expect(data.at(-1)?.errors?.[0]?.extensions?.code).toBe('MCP_UNAUTHENTICATED');
    expect(text.trimEnd().endsWith('event: complete\ndata:')).toBe(true);
    await new Promise((res) => setTimeout(res, 100));
    expect(gw.services.liveMetrics.size).toBe(0);
  });
});
