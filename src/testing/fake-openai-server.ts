/**
 * A cheap OpenAI-compatible server on 127.0.0.1 (raw node:http, precomputed bodies) for tests
 * and gateway-overhead benchmarks: GET /v1/models, POST /v1/chat/completions, /v1/completions
 * (both with SSE streaming, configurable tokens and inter-token delay, usage; non-streamed answers
 * optionally paced like a real server) and /v1/embeddings.
 * Answers immediately by default.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { AnswerTimers, listenOnLoopback, tallyingListener, withCounters, type RequestTally, type ServerCounters } from './loopback-server.ts';

export interface FakeOpenAIBehavior {
  /** Model ids listed by GET /v1/models; the first is echoed as `model` in answers. */
  models: string[];
  /** Answer tokens; the non-streamed text is their concatenation. */
  tokens: string[];
  /** Delay between streamed tokens. */
  tokenDelayMs: number;
  /** Non-streamed completions take as long as streaming them would (tokens × tokenDelayMs), like a real server. */
  paceAnswers: boolean;
  /** Delay before the response headers (every route). */
  delayMs: number;
  /** A random extra delay, uniform in 0 … delayJitterMs, added to delayMs (answers that do not all take the same time). */
  delayJitterMs: number;
  finishReason: 'stop' | 'length';
  promptTokens: number;
  embeddingDim: number;
  /** Answer every POST with this status and body instead (e.g. 429, 503). */
  status?: number;
  errorBody?: unknown;
  /** Extra headers on error answers (e.g. `retry-after`). */
  errorHeaders?: Record<string, string>;
  /** Accept requests and never answer. */
  hang: boolean;
  /** Hold every answer (after `delayMs`) until this settles: a test decides when the upstream answers. */
  gate?: Promise<unknown>;
  /** Streaming: destroy the socket after this many tokens. */
  dropAfterTokens?: number;
}

export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: unknown;
}

/** The fake server and what it saw (`counts` per path, e.g. counts['/v1/chat/completions']). */
export interface FakeOpenAIServer extends ServerCounters {
  /** Base URL including `/v1` (an OpenAI `baseURL`, a backend `endpoint`). */
  readonly url: string;
  /** `http://127.0.0.1:port`. */
  readonly origin: string;
  /** The last request (body parsed as JSON). */
  readonly lastRequest: RecordedRequest | undefined;
  /** Replaces the behaviour (unspecified fields take defaults). */
  setBehavior(behavior: Partial<FakeOpenAIBehavior>): void;
  close(): Promise<void>;
}

const DEFAULTS: FakeOpenAIBehavior = {
  models: ['fake-model'],
  tokens: ['Hello', ',', ' world', '!'],
  tokenDelayMs: 0,
  paceAnswers: false,
  delayMs: 0,
  delayJitterMs: 0,
  finishReason: 'stop',
  promptTokens: 5,
  embeddingDim: 4,
  hang: false,
};

interface Precomputed {
  behavior: FakeOpenAIBehavior;
  models: Buffer;
  chat: Buffer;
  completion: Buffer;
  chatFrames: Buffer[];
  completionFrames: Buffer[];
  finishChat: Buffer;
  finishCompletion: Buffer;
  usageChat: Buffer;
  usageCompletion: Buffer;
  error: Buffer;
}

const DONE = Buffer.from('data: [DONE]\n\n');
const JSON_HEADERS = { 'content-type': 'application/json' };
const SSE_HEADERS = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' };

function sse(obj: unknown): Buffer {
  return Buffer.from(`data: ${JSON.stringify(obj)}\n\n`);
}

function precompute(b: FakeOpenAIBehavior): Precomputed {
  const model = b.models[0] ?? 'fake-model';
  const text = b.tokens.join('');
  const usage = { prompt_tokens: b.promptTokens, completion_tokens: b.tokens.length, total_tokens: b.promptTokens + b.tokens.length };
  const chunkBase = { id: 'chatcmpl-fake', object: 'chat.completion.chunk', created: 0, model };
  const cmplBase = { id: 'cmpl-fake', object: 'text_completion', created: 0, model };
  return {
    behavior: b,
    models: Buffer.from(JSON.stringify({ object: 'list', data: b.models.map((id) => ({ id, object: 'model', created: 0, owned_by: 'fake' })) })),
    chat: Buffer.from(
      JSON.stringify({
        id: 'chatcmpl-fake',
        object: 'chat.completion',
        created: 0,
        model,
        choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: b.finishReason, logprobs: null }],
        usage,
      }),
    ),
    completion: Buffer.from(
      JSON.stringify({
        id: 'cmpl-fake',
        object: 'text_completion',
        created: 0,
        model,
        choices: [{ index: 0, text, finish_reason: b.finishReason, logprobs: null }],
        usage,
      }),
    ),
    chatFrames: [
      sse({ ...chunkBase, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] }),
      ...b.tokens.map((t) => sse({ ...chunkBase, choices: [{ index: 0, delta: { content: t }, finish_reason: null }] })),
    ],
    completionFrames: b.tokens.map((t) => sse({ ...cmplBase, choices: [{ index: 0, text: t, finish_reason: null, logprobs: null }] })),
    finishChat: sse({ ...chunkBase, choices: [{ index: 0, delta: {}, finish_reason: b.finishReason }] }),
    finishCompletion: sse({ ...cmplBase, choices: [{ index: 0, text: '', finish_reason: b.finishReason, logprobs: null }] }),
    usageChat: sse({ ...chunkBase, choices: [], usage }),
    usageCompletion: sse({ ...cmplBase, choices: [], usage }),
    error: Buffer.from(JSON.stringify(b.errorBody ?? { error: { message: `fake error ${b.status ?? 500}`, type: 'fake_error', code: null } })),
  };
}

export async function startFakeOpenAI(opts: Partial<FakeOpenAIBehavior> = {}): Promise<FakeOpenAIServer> {
  let pre = precompute({ ...DEFAULTS, ...opts });
  const tally: RequestTally = { requests: 0, aborted: 0, open: 0, counts: {} };
  let lastRequest: RecordedRequest | undefined;
  const timers = new AnswerTimers();
  const sleep = (ms: number, res: ServerResponse) => timers.wait(ms, res);

  const send = (res: ServerResponse, status: number, headers: Record<string, string>, body: Buffer) => {
    res.writeHead(status, { ...headers, 'content-length': String(body.length) });
    res.end(body);
  };

  async function handle(req: IncomingMessage, res: ServerResponse, raw: string): Promise<void> {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    let body: unknown;
    if (raw !== '') {
      try {
        body = JSON.parse(raw);
      } catch {
        send(res, 400, JSON_HEADERS, Buffer.from('{"error":{"message":"invalid JSON","type":"invalid_request_error"}}'));
        return;
      }
    }
    lastRequest = { method: req.method ?? 'GET', path, headers: req.headers, body };
    const p = pre;
    const b = p.behavior;
    if (b.hang) return;
    const delay = b.delayMs + (b.delayJitterMs > 0 ? Math.random() * b.delayJitterMs : 0);
    if (delay > 0 && !(await sleep(delay, res))) return;
    if (b.gate) {
      await b.gate;
      if (res.destroyed) return;
    }

    if (req.method === 'GET' && path === '/v1/models') {
      send(res, 200, JSON_HEADERS, p.models);
      return;
    }
    if (req.method !== 'POST') {
      send(res, 404, JSON_HEADERS, Buffer.from('{"error":{"message":"not found"}}'));
      return;
    }
    if (b.status !== undefined) {
      send(res, b.status, { ...JSON_HEADERS, ...(b.errorHeaders ?? {}) }, p.error);
      return;
    }

    const reqBody = (body ?? {}) as { stream?: boolean; stream_options?: { include_usage?: boolean }; input?: unknown };
    if (path === '/v1/embeddings') {
      const inputs = Array.isArray(reqBody.input) ? (reqBody.input as unknown[]) : [reqBody.input];
      const data = inputs.map((text, index) => ({
        object: 'embedding',
        index,
        embedding: Array.from({ length: b.embeddingDim }, (_, j) => ((String(text).length + j) % 7) / 7),
      }));
      const tokens = inputs.reduce<number>((n, t) => n + String(t).length, 0);
      send(
        res,
        200,
        JSON_HEADERS,
        Buffer.from(
          JSON.stringify({
            object: 'list',
            data,
            model: b.models[0],
            usage: { prompt_tokens: tokens, total_tokens: tokens },
          }),
        ),
      );
      return;
    }
    const chat = path === '/v1/chat/completions';
    if (!chat && path !== '/v1/completions') {
      send(res, 404, JSON_HEADERS, Buffer.from('{"error":{"message":"not found"}}'));
      return;
    }
    if (!reqBody.stream) {
      if (b.paceAnswers && !(await sleep(b.tokenDelayMs * b.tokens.length, res))) return;
      send(res, 200, JSON_HEADERS, chat ? p.chat : p.completion);
      return;
    }

    res.writeHead(200, SSE_HEADERS);
    const frames = chat ? p.chatFrames : p.completionFrames;
    const tokenOffset = chat ? 1 : 0;
    for (let i = 0; i < frames.length; i++) {
      const tokenIndex = i - tokenOffset;
      if (tokenIndex >= 0) {
        if (b.dropAfterTokens !== undefined && tokenIndex >= b.dropAfterTokens) {
          res.socket?.destroy();
          return;
        }
        if (tokenIndex > 0 && b.tokenDelayMs > 0 && !(await sleep(b.tokenDelayMs, res))) return;
      }
      if (res.destroyed) return;
      res.write(frames[i]);
    }
    res.write(chat ? p.finishChat : p.finishCompletion);
    if (reqBody.stream_options?.include_usage) res.write(chat ? p.usageChat : p.usageCompletion);
    res.end(DONE);
  }

  const lb = await listenOnLoopback(
    tallyingListener(tally, (req, res, raw) => {
      handle(req, res, raw).catch(() => res.destroy());
    }),
  );
  const origin = lb.origin;

  const server: Omit<FakeOpenAIServer, keyof ServerCounters> = {
    url: `${origin}/v1`,
    origin,
    get lastRequest() {
      return lastRequest;
    },
    setBehavior(behavior) {
      pre = precompute({ ...DEFAULTS, ...behavior });
    },
    async close() {
      timers.clear();
      await lb.close();
    },
  };
  return withCounters(server, tally, lb);
}
