/**
 * A real gateway in front of real loopback upstreams (fake OpenAI-compatible server, fake KServe v2
 * server), with a chat model, a generate model, an embedding model and a tensor model seeded from config.
 */
import type { ConfigInput } from '../../src/config/schema.ts';
import { startFakeKServe, type FakeKServeServer } from '../../src/testing/fake-kserve-server.ts';
import { startFakeOpenAI, type FakeOpenAIServer } from '../../src/testing/fake-openai-server.ts';
import { startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';

export interface Stack {
  gw: TestGateway;
  openai: FakeOpenAIServer;
  kserve: FakeKServeServer;
  close(): Promise<void>;
}

export const TOKENS = ['Hello', ',', ' capy', 'bara', '!'];
export const ANSWER = TOKENS.join('');

export async function startStack(extra: Partial<ConfigInput> = {}): Promise<Stack> {
  const openai = await startFakeOpenAI({ models: ['fake-model'], tokens: TOKENS });
  const kserve = await startFakeKServe();
  const inst = (options: Record<string, unknown> = {}) => ({ backend: 'openai', endpoint: openai.url, options: { model: 'fake-model', ...options } });
  let gw: TestGateway;
  try {
    gw = await startTestGateway({
      defaultPlugins: false,
      plugins: [{ use: 'openai' }, { use: 'kserve-v2' }, { use: 'p2c-ewma' }, ...(extra.plugins ?? [])],
      models: [
        { id: 'chat-model', task: 'chat', defaultVersion: 'v1', versions: [{ version: 'v1', instances: [inst()] }] },
        { id: 'gen-model', task: 'generate', defaultVersion: 'v1', versions: [{ version: 'v1', instances: [inst()] }] },
        { id: 'embed-model', task: 'embed', defaultVersion: 'v1', versions: [{ version: 'v1', instances: [inst()] }] },
        {
          id: 'doubler',
          task: 'tensor',
          defaultVersion: '1',
          versions: [{ version: '1', instances: [{ backend: 'kserve-v2', endpoint: kserve.url, options: { model: 'doubler', version: '1' } }] }],
        },
        ...(extra.models ?? []),
      ],
      // Active probes (GET /v1/models) off by default: they would race with assertions on the upstream's lastRequest.
      router: { healthCheck: { enabled: false } },
      ...Object.fromEntries(Object.entries(extra).filter(([k]) => k !== 'plugins' && k !== 'models')),
    });
  } catch (err) {
    await openai.close();
    await kserve.close();
    throw err;
  }
  return {
    gw,
    openai,
    kserve,
    async close() {
      await gw.close();
      await openai.close();
      await kserve.close();
    },
  };
}

/** Waits until `cond()` is true, polling every 10 ms, at most `ms`. */
export async function until(cond: () => boolean, ms = 3000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return cond();
}

/** Reads a text/event-stream response into its `data:` payloads, recording when each arrived. */
export async function readSse(res: Response): Promise<Array<{ data: string; at: number }>> {
  const out: Array<{ data: string; at: number }> = [];
  const decoder = new TextDecoder();
  let buf = '';
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(chunk, { stream: true });
    let i: number;
    while ((i = buf.indexOf('\n\n')) !== -1) {
      const event = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const data = event
        .split('\n')
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).trimStart())
        .join('\n');
      if (data) out.push({ data, at: performance.now() });
    }
  }
  return out;
}

/** The error code of any of our error shapes (REST/OpenAI `error.code`, KServe `code`, GraphQL `errors[0].extensions.code`). */
export function codeOf(body: unknown): string | undefined {
  const b = body as { error?: { code?: string } | string; code?: string; errors?: Array<{ extensions?: { code?: string } }> };
  if (b && typeof b.error === 'object' && b.error) return b.error.code;
  if (b && typeof b.code === 'string') return b.code;
  return b?.errors?.[0]?.extensions?.code;
}
