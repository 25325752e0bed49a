import { McpError } from '../errors.ts';
import { buildInferenceRequest } from '../inference/request.ts';
import { setRateLimitHeaders } from '../limits/headers.ts';
import type { InferenceResult } from '../inference/types.ts';
import type { TokenSet } from '../plugin/contract.ts';
import type { Services } from '../services.ts';
import { traced, tracedAuth } from '../tracing/entry.ts';
import type { InferenceTrace } from '../tracing/inference-trace.ts';
import type { EntryInfo } from '../tracing/tracing.ts';
import { authRequestOf, pathParam, readJson, sendJson, type HttpExchange, cacheHeader } from './common.ts';

const MODEL_INFERENCE = /^\/api\/v1\/models\/([^/]+)\/inference$/;
const MODEL_ONE = /^\/api\/v1\/models\/([^/]+)$/;

function modelJson(
  m: { id: string; name: string; description: string; task: string; labels: unknown; defaultVersion: string | null; createdAt: Date },
  status: string,
) {
  return {
    id: m.id,
    name: m.name,
    description: m.description,
    task: m.task,
    labels: m.labels,
    default_version: m.defaultVersion,
    status,
    created_at: m.createdAt.toISOString(),
  };
}

/** Turns the REST body into an inference input: a plain `input` string, or prompt / messages / texts / inputs (KServe-style tensors). */
function restInput(body: Record<string, unknown>): unknown {
  const parameters = body.parameters;
  const base = parameters === undefined ? {} : { parameters };
  if (typeof body.input === 'string') return { task: 'generate', prompt: body.input, ...base };
  if (body.input && typeof body.input === 'object' && !Array.isArray(body.input)) return { ...base, ...(body.input as object) };
  if (typeof body.prompt === 'string') return { task: 'generate', prompt: body.prompt, ...base };
  if (Array.isArray(body.messages)) return { task: 'chat', messages: body.messages, ...base };
  if (Array.isArray(body.texts)) return { task: 'embed', texts: body.texts, ...base };
  if (Array.isArray(body.inputs)) return { task: 'tensor', tensors: body.inputs, ...base };
  throw new McpError('MCP_VALIDATION_FAILED', 'body: give `input` (a prompt string or an input object), `prompt`, `messages`, `texts` or `inputs`', {
    details: { path: 'body' },
  });
}

function resultOf(r: InferenceResult): unknown {
  return r.text ?? r.tensors ?? r.embeddings ?? null;
}

/** Largest body of a login, refresh or logout request. */
const AUTH_BODY_LIMIT = 16 * 1024;

function stringField(b: Record<string, unknown>, name: string): string {
  const v = b[name];
  if (typeof v !== 'string' || v.length === 0) throw new McpError('MCP_VALIDATION_FAILED', `${name}: required string`, { details: { path: name } });
  return v;
}

function tokensJson(t: TokenSet) {
  return { access_token: t.accessToken, token_type: 'Bearer', expires_in: t.expiresIn, refresh_token: t.refreshToken };
}

/** `POST /api/v1/auth/login|refresh|logout` (strategy password): no credentials needed, OAuth2-style answers. */
async function handleAuthRoute(services: Services, x: HttpExchange, method: string): Promise<boolean> {
  const action = x.path.slice('/api/v1/auth/'.length);
  if (action !== 'login' && action !== 'refresh' && action !== 'logout') return false;
  if (method !== 'POST') throw new McpError('MCP_BAD_REQUEST', `use POST for ${x.path}`, { status: 405 });
  const body = await readJson(x.req, AUTH_BODY_LIMIT);
  if (!body || typeof body !== 'object' || Array.isArray(body))
    throw new McpError('MCP_VALIDATION_FAILED', 'body: must be a JSON object', { details: { path: 'body' } });
  const b = body as Record<string, unknown>;
  const caller = { ip: x.req.socket.remoteAddress, requestId: x.requestId };
  if (action === 'login') {
    sendJson(x.res, 200, tokensJson(await services.auth.login(stringField(b, 'username'), stringField(b, 'password'), caller)), {
      'cache-control': 'no-store',
    });
  } else if (action === 'refresh') {
    sendJson(x.res, 200, tokensJson(await services.auth.refresh(stringField(b, 'refresh_token'), caller)), { 'cache-control': 'no-store' });
  } else {
    await services.auth.logout(stringField(b, 'refresh_token'), caller);
    sendJson(x.res, 200, { status: 'ok' });
  }
  return true;
}

/** The seed REST API, `/api/v1/...`: thin, it calls the same services as GraphQL. */
export async function handleRest(services: Services, x: HttpExchange): Promise<boolean> {
  const { req, res, path } = x;
  const method = req.method ?? 'GET';
  const url = new URL(req.url ?? '/', 'http://localhost');

  if (path === '/api/v1/health' && method === 'GET') {
    const r = await services.readiness();
    const status = !r.ready ? 'not ready' : r.storage === 'up' ? 'ok' : 'degraded';
    sendJson(res, r.ready ? 200 : 503, { status, storage: services.database.kind, storageState: r.storage, checks: r.checks });
    return true;
  }
  if (path.startsWith('/api/v1/auth/')) return handleAuthRoute(services, x, method);
  if (path === '/api/v1/metrics' && method === 'GET') {
    await services.auth.requirePermission(authRequestOf(req, 'rest'), 'metrics:read');
    sendJson(res, 200, { status: 'ok', ...services.metrics.summary(services.instances) });
    return true;
  }
  if (path === '/api/v1/models' && method === 'GET') {
    const principal = await services.auth.requirePermission(authRequestOf(req, 'rest'), 'models:read');
    const limit = url.searchParams.get('limit');
    const page = await services.registry.list(
      { task: url.searchParams.get('task') ?? undefined, search: url.searchParams.get('search') ?? undefined, ids: principal.models },
      { first: limit ? Number(limit) || 50 : 50, after: url.searchParams.get('cursor') ?? undefined },
    );
    const statuses = await services.registry.statusesOf(page.items.map((m) => m.id));
    sendJson(res, 200, {
      models: page.items.map((m, i) => modelJson(m, statuses[i]!)),
      total: page.total,
      next_cursor: page.hasNextPage ? page.endCursor : null,
      status: 'ok',
    });
    return true;
  }
  let m = MODEL_ONE.exec(path);
  if (m && method === 'GET') {
    const principal = await services.auth.requirePermission(authRequestOf(req, 'rest'), 'models:read');
    const id = pathParam(m[1]!, 'model');
    services.auth.authorize(principal, 'models:read', id);
    const model = await services.registry.require(id);
    const [status] = await services.registry.statusesOf([model.id]);
    sendJson(res, 200, { model: modelJson(model, status!), status: 'ok' });
    return true;
  }
  m = MODEL_INFERENCE.exec(path);
  if (m) {
    if (method !== 'POST') throw new McpError('MCP_BAD_REQUEST', 'use POST for inference', { status: 405 });
    const modelParam = m[1]!;
    await traced(services.tracing, REST_ENTRY, req.headers, (trace) => restInference(services, x, modelParam, trace));
    return true;
  }
  return false;
}

const REST_ENTRY: EntryInfo = { entry: 'rest', name: 'POST /api/v1/models/{id}/inference', method: 'POST', route: '/api/v1/models/{id}/inference' };

/** POST /api/v1/models/{id}/inference. */
async function restInference(services: Services, x: HttpExchange, modelParam: string, trace: InferenceTrace | undefined): Promise<void> {
  const { req, res } = x;
  const principal = await tracedAuth(trace, services.auth.requirePermission(authRequestOf(req, 'rest'), 'inference:invoke'));
  services.auth.authorize(principal, 'inference:invoke', pathParam(modelParam, 'model'));
  const body = await readJson(req, services.config.server.maxBodyBytes);
  if (!body || typeof body !== 'object' || Array.isArray(body))
    throw new McpError('MCP_VALIDATION_FAILED', 'body: must be a JSON object', { details: { path: 'body' } });
  const b = body as Record<string, unknown>;
  if (b.version !== undefined && typeof b.version !== 'string')
    throw new McpError('MCP_VALIDATION_FAILED', 'version: must be a string', { details: { path: 'version' } });
  const modelId = pathParam(modelParam, 'model');
  const result = await services.inference.infer(
    buildInferenceRequest({
      headers: req.headers,
      id: x.requestId,
      model: modelId,
      version: typeof b.version === 'string' ? b.version : undefined,
      input: restInput(b),
      entry: 'rest',
      ip: req.socket.remoteAddress,
      onLimits: (p) => setRateLimitHeaders(res, p),
      onCache: cacheHeader(res),
      signal: x.signal,
      principal,
      trace,
      priority: b.priority,
    }),
  );
  sendJson(res, 200, {
    result: resultOf(result),
    model_id: modelId,
    version: result.version,
    id: result.id,
    finish_reason: result.finishReason ?? null,
    usage: result.usage
      ? { prompt_tokens: result.usage.promptTokens, completion_tokens: result.usage.completionTokens, total_tokens: result.usage.totalTokens }
      : null,
    latency_ms: result.latencyMs,
    ...(result.routing ? { routing: result.routing } : {}),
  });
}
