import type { ServerResponse } from 'node:http';
import { McpError, toMcpError } from '../errors.ts';
import { buildInferenceRequest, type RequestParts } from '../inference/request.ts';
import { EXTRA_PARAMETER_ALIASES } from '../inference/schema.ts';
import { setRateLimitHeaders } from '../limits/headers.ts';
import type { InferenceRequest, InferenceResult, Usage } from '../inference/types.ts';
import type { Services } from '../services.ts';
import { traced, tracedAuth } from '../tracing/entry.ts';
import type { InferenceTrace } from '../tracing/inference-trace.ts';
import type { EntryInfo } from '../tracing/tracing.ts';
import { authRequestOf, inClientTerms, pathParam, readJson, sendJson, type HttpExchange, cacheHeader } from './common.ts';
import type { HttpAdapter } from './server.ts';
import { checkId } from '../validation.ts';

/** Body fields we accept; anything else is MCP_UNSUPPORTED_PARAMETER (so typos do not pass silently). */
const COMMON = new Set([
  'model',
  'stream',
  'stream_options',
  'max_tokens',
  'max_completion_tokens',
  'temperature',
  'top_p',
  'top_k',
  'seed',
  'stop',
  'n',
  'user',
  'extra_body',
]);
const CHAT = new Set([...COMMON, 'messages']);
const COMPLETION = new Set([...COMMON, 'prompt']);
const EMBEDDING = new Set(['model', 'input', 'user', 'encoding_format']);

function object(body: unknown): Record<string, unknown> {
  if (!body || typeof body !== 'object' || Array.isArray(body))
    throw new McpError('MCP_VALIDATION_FAILED', 'the body must be a JSON object', { details: { path: 'body' } });
  return body as Record<string, unknown>;
}

function checkFields(b: Record<string, unknown>, allowed: Set<string>): void {
  for (const k of Object.keys(b)) {
    if (!allowed.has(k)) throw new McpError('MCP_UNSUPPORTED_PARAMETER', `unsupported parameter: ${k}`, { details: { path: k } });
  }
  if (typeof b.model !== 'string' || !b.model) throw new McpError('MCP_VALIDATION_FAILED', 'model: required string', { details: { path: 'model' } });
  if (b.n !== undefined && b.n !== 1) throw new McpError('MCP_UNSUPPORTED_PARAMETER', 'n: only 1 is supported', { details: { path: 'n' } });
  if (b.stream !== undefined && typeof b.stream !== 'boolean')
    throw new McpError('MCP_VALIDATION_FAILED', 'stream: must be a boolean', { details: { path: 'stream' } });
}

function parameters(b: Record<string, unknown>): Record<string, unknown> {
  const p: Record<string, unknown> = {};
  const maxTokens = b.max_completion_tokens ?? b.max_tokens;
  if (maxTokens !== undefined && maxTokens !== null) p.maxTokens = maxTokens;
  if (b.temperature !== undefined && b.temperature !== null) p.temperature = b.temperature;
  if (b.top_p !== undefined && b.top_p !== null) p.topP = b.top_p;
  if (b.top_k !== undefined && b.top_k !== null) p.topK = b.top_k;
  if (b.seed !== undefined && b.seed !== null) p.seed = b.seed;
  if (b.stop !== undefined && b.stop !== null) p.stop = typeof b.stop === 'string' ? [b.stop] : b.stop;
  return p;
}

/**
 * `extra_body`: a JSON object passed through to the backend as the input's `extra` (validated
 * there with the named parameters: a `max_tokens` in it obeys the same cap); anything else is refused.
 */
function extraBody(v: unknown): Record<string, unknown> | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v))
    throw new McpError('MCP_VALIDATION_FAILED', 'extra_body: must be a JSON object', { details: { path: 'extra_body' } });
  return v as Record<string, unknown>;
}

/** Internal generation parameter → the body fields that set it, in the order parameters() reads them. */
const PARAMETER_FIELDS: Readonly<Record<string, readonly string[]>> = {
  maxTokens: ['max_completion_tokens', 'max_tokens'],
  temperature: ['temperature'],
  topP: ['top_p'],
  topK: ['top_k'],
  seed: ['seed'],
  stop: ['stop'],
};

/** `a.0.b` → `a[0].b` (how OpenAI names an element). */
const indexed = (segments: readonly string[]) => segments.reduce((out, s) => (/^\d+$/.test(s) ? `${out}[${s}]` : out ? `${out}.${s}` : s), '');

/**
 * The body field an internal input path came from (`input.parameters.temperature` → `temperature`,
 * `input.messages.0.content` → `messages[0].content`, `input.extra.x` → `extra_body.x`,
 * `input.texts.1` → `input[1]`), so an error names what the client sent.
 */
export function openAiParam(b: Record<string, unknown>, path: string): string {
  const [root, field, ...rest] = path.split('.');
  if (root === 'version') return 'model';
  if (root !== 'input' || field === undefined) return path;
  const given = (k: string) => b[k] !== undefined && b[k] !== null;
  switch (field) {
    case 'parameters': {
      const [name, ...more] = rest;
      if (name === undefined) return path;
      const top = PARAMETER_FIELDS[name]?.find(given);
      if (top) return indexed([top, ...(top === 'stop' && typeof b.stop === 'string' ? [] : more)]);
      // lifted from extra_body (liftExtraParameters): the alias the client used there
      const extra = (b.extra_body ?? {}) as Record<string, unknown>;
      const alias = Object.keys(extra).find((k) => Object.hasOwn(EXTRA_PARAMETER_ALIASES, k) && EXTRA_PARAMETER_ALIASES[k] === name);
      return alias
        ? indexed(['extra_body', alias, ...(typeof extra[alias] === 'string' ? [] : more)])
        : indexed([PARAMETER_FIELDS[name]?.at(-1) ?? name, ...more]);
    }
    case 'extra':
      return indexed(['extra_body', ...rest]);
    case 'texts':
      return indexed(['input', ...(Array.isArray(b.input) ? rest : [])]);
    case 'prompt':
      return Array.isArray(b.prompt) ? 'prompt[0]' : 'prompt';
    default:
      return indexed([field, ...rest]);
  }
}

/** Builds the inference request; a validation error names the body field (openAiParam), not the internal input's path. */
function buildRequest(b: Record<string, unknown>, parts: RequestParts): InferenceRequest {
  try {
    return buildInferenceRequest(parts);
  } catch (err) {
    throw inClientTerms(err, (path) => openAiParam(b, path));
  }
}

/** `model` may be `id` or `id:version`. */
function modelRef(model: string): { model: string; version?: string } {
  checkId(model, 'model');
  const i = model.lastIndexOf(':');
  return i > 0 ? { model: model.slice(0, i), version: model.slice(i + 1) } : { model };
}

const usageJson = (u: Usage | undefined) => u && { prompt_tokens: u.promptTokens, completion_tokens: u.completionTokens, total_tokens: u.totalTokens };
const created = () => Math.floor(Date.now() / 1000);

function sseHeaders(res: ServerResponse, requestId: string): void {
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-request-id': requestId });
  res.flushHeaders();
}

/** OpenAI error shape: `{ error: { message, type, code, param } }`. */
function openAiError(e: McpError): unknown {
  const type = e.status === 401 ? 'authentication_error' : e.status === 429 ? 'rate_limit_error' : e.status >= 500 ? 'server_error' : 'invalid_request_error';
  return { error: { message: e.message, type, code: e.code, param: (e.details?.path as string | undefined) ?? null } };
}

const CHAT_ENTRY: EntryInfo = { entry: 'openai', name: 'POST /v1/chat/completions', method: 'POST', route: '/v1/chat/completions' };
const COMPLETION_ENTRY: EntryInfo = { entry: 'openai', name: 'POST /v1/completions', method: 'POST', route: '/v1/completions' };
const EMBEDDING_ENTRY: EntryInfo = { entry: 'openai', name: 'POST /v1/embeddings', method: 'POST', route: '/v1/embeddings' };

async function completions(services: Services, x: HttpExchange, chat: boolean, trace: InferenceTrace | undefined): Promise<void> {
  const principal = await tracedAuth(trace, services.auth.requirePermission(authRequestOf(x.req, 'openai'), 'inference:invoke'));
  const b = object(await readJson(x.req, services.config.server.maxBodyBytes));
  checkFields(b, chat ? CHAT : COMPLETION);
  const ref = modelRef(b.model as string);
  services.auth.authorize(principal, 'inference:invoke', ref.model);
  const stream = b.stream === true;
  let prompt = b.prompt;
  if (!chat && Array.isArray(prompt)) {
    if (prompt.length !== 1) throw new McpError('MCP_UNSUPPORTED_PARAMETER', 'prompt: one prompt per request', { details: { path: 'prompt' } });
    prompt = prompt[0];
  }
  const extra = extraBody(b.extra_body);
  const req = buildRequest(b, {
    headers: x.req.headers,
    id: x.requestId,
    ...ref,
    stream,
    entry: 'openai',
    ip: x.req.socket.remoteAddress,
    onLimits: (p) => setRateLimitHeaders(x.res, p),
    onCache: cacheHeader(x.res),
    signal: x.signal,
    principal,
    trace,
    affinityKey: typeof b.user === 'string' ? b.user : undefined,
    input: chat
      ? { task: 'chat', messages: b.messages, parameters: parameters(b), ...(extra ? { extra } : {}) }
      : { task: 'generate', prompt, parameters: parameters(b), ...(extra ? { extra } : {}) },
  });
  const id = `${chat ? 'chatcmpl' : 'cmpl'}-${req.id}`;
  const object_ = chat ? 'chat.completion' : 'text_completion';
  const model = b.model as string;
  if (!stream) {
    const r: InferenceResult = await services.inference.infer(req);
    const finish = r.finishReason ?? 'stop';
    sendJson(x.res, 200, {
      id,
      object: object_,
      created: created(),
      model,
      choices: [
        chat
          ? { index: 0, message: { role: 'assistant', content: r.text ?? '' }, finish_reason: finish, logprobs: null }
          : { index: 0, text: r.text ?? '', finish_reason: finish, logprobs: null },
      ],
      usage: usageJson(r.usage) ?? null,
    });
    return;
  }
  const includeUsage = (b.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true;
  const chunks = services.inference.stream(req);
  const it = chunks[Symbol.asyncIterator]();
  // The first chunk decides success: before it, errors are answered with a status code.
  const first = await it.next();
  sseHeaders(x.res, x.requestId);
  const write = (data: unknown) => x.res.write(`data: ${JSON.stringify(data)}\n\n`);
  const frame = (text: string, finish: string | null, role = false) => ({
    id,
    object: chat ? 'chat.completion.chunk' : 'text_completion',
    created: created(),
    model,
    choices: [
      chat
        ? { index: 0, delta: role ? { role: 'assistant', content: text } : { content: text }, finish_reason: finish, logprobs: null }
        : { index: 0, text, finish_reason: finish, logprobs: null },
    ],
  });
  let usage: Usage | undefined;
  let finish: string = 'stop';
  try {
    let r = first;
    let isFirst = true;
    while (!r.done) {
      const c = r.value;
      if (c.usage) usage = c.usage;
      if (c.finishReason) finish = c.finishReason;
      if (c.text || isFirst) write(frame(c.text, null, chat && isFirst));
      isFirst = false;
      r = await it.next();
    }
    write(frame('', finish === 'cancelled' ? 'stop' : finish));
    if (includeUsage)
      write({ id, object: chat ? 'chat.completion.chunk' : 'text_completion', created: created(), model, choices: [], usage: usageJson(usage) ?? null });
    x.res.end('data: [DONE]\n\n');
  } catch (err) {
    // After the first token the status is sent: report the error in the stream, then end it.
    const e = toMcpError(err);
    if (!x.res.destroyed) {
      write(openAiError(e));
      x.res.end('data: [DONE]\n\n');
    }
  }
}

/** OpenAI's `encoding_format: base64`: little-endian float32s, base64 (what the official SDKs ask for by default). */
function base64Floats(v: number[]): string {
  const f = new Float32Array(v);
  return Buffer.from(f.buffer, f.byteOffset, f.byteLength).toString('base64');
}

async function embeddings(services: Services, x: HttpExchange, trace: InferenceTrace | undefined): Promise<void> {
  const principal = await tracedAuth(trace, services.auth.requirePermission(authRequestOf(x.req, 'openai'), 'inference:invoke'));
  const b = object(await readJson(x.req, services.config.server.maxBodyBytes));
  checkFields(b, EMBEDDING);
  services.auth.authorize(principal, 'inference:invoke', modelRef(b.model as string).model);
  const format = b.encoding_format ?? 'float';
  if (format !== 'float' && format !== 'base64') {
    throw new McpError('MCP_UNSUPPORTED_PARAMETER', 'encoding_format: float or base64', { details: { path: 'encoding_format' } });
  }
  const texts = typeof b.input === 'string' ? [b.input] : b.input;
  const r = await services.inference.infer(
    buildRequest(b, {
      headers: x.req.headers,
      id: x.requestId,
      ...modelRef(b.model as string),
      entry: 'openai',
      ip: x.req.socket.remoteAddress,
      onLimits: (p) => setRateLimitHeaders(x.res, p),
      onCache: cacheHeader(x.res),
      signal: x.signal,
      principal,
      trace,
      input: { task: 'embed', texts },
    }),
  );
  sendJson(x.res, 200, {
    object: 'list',
    model: b.model,
    data: (r.embeddings ?? []).map((embedding, index) => ({
      object: 'embedding',
      index,
      embedding: format === 'base64' ? base64Floats(embedding) : embedding,
    })),
    usage: r.usage ? { prompt_tokens: r.usage.promptTokens, total_tokens: r.usage.totalTokens } : { prompt_tokens: 0, total_tokens: 0 },
  });
}

async function listModels(services: Services, x: HttpExchange): Promise<void> {
  const principal = await services.auth.requirePermission(authRequestOf(x.req, 'openai'), 'models:read');
  const page = await services.registry.list({ ids: principal.models }, { first: 500 });
  sendJson(x.res, 200, {
    object: 'list',
    data: page.items.map((m) => ({ id: m.id, object: 'model', created: Math.floor(m.createdAt.getTime() / 1000), owned_by: 'capibara-mcp' })),
  });
}

/** OpenAI-compatible API under /v1: models, chat completions, completions, embeddings (SSE streaming). */
export const openAiAdapter: HttpAdapter = {
  prefix: '/v1/',
  errorBody: openAiError,
  async handle(services, x) {
    const method = x.req.method;
    if (x.path === '/v1/models' && method === 'GET') return listModels(services, x).then(() => true);
    if (x.path.startsWith('/v1/models/') && method === 'GET') {
      const principal = await services.auth.requirePermission(authRequestOf(x.req, 'openai'), 'models:read');
      const id = pathParam(x.path.slice('/v1/models/'.length), 'model');
      services.auth.authorize(principal, 'models:read', id);
      const m = await services.registry.require(id);
      sendJson(x.res, 200, { id: m.id, object: 'model', created: Math.floor(m.createdAt.getTime() / 1000), owned_by: 'capibara-mcp' });
      return true;
    }
    if (method !== 'POST') return false;
    if (x.path === '/v1/chat/completions')
      return traced(services.tracing, CHAT_ENTRY, x.req.headers, (t) => completions(services, x, true, t)).then(() => true);
    if (x.path === '/v1/completions')
      return traced(services.tracing, COMPLETION_ENTRY, x.req.headers, (t) => completions(services, x, false, t)).then(() => true);
    if (x.path === '/v1/embeddings') return traced(services.tracing, EMBEDDING_ENTRY, x.req.headers, (t) => embeddings(services, x, t)).then(() => true);
    return false;
  },
};
