import { McpError } from '../errors.ts';
import { buildInferenceRequest } from '../inference/request.ts';
import type { InferenceResult } from '../inference/types.ts';
import type { Services } from '../services.ts';
import { authRequestOf, pathParam, readJson, sendJson, type HttpExchange } from './common.ts';

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

/** The seed REST API, `/api/v1/...`: thin, it calls the same services as GraphQL. */
export async function handleRest(services: Services, x: HttpExchange): Promise<boolean> {
  const { req, res, path } = x;
  const method = req.method ?? 'GET';
  const url = new URL(req.url ?? '/', 'http://localhost');

  if (path === '/api/v1/health' && method === 'GET') {
    const r = await services.readiness();
    sendJson(res, r.ready ? 200 : 503, { status: r.ready ? 'ok' : 'degraded', storage: services.database.kind, checks: r.checks });
    return true;
  }
  if (path === '/api/v1/metrics' && method === 'GET') {
    await services.auth.require(authRequestOf(req, 'rest'));
    sendJson(res, 200, { status: 'ok', ...services.metrics.summary() });
    return true;
  }
  if (path === '/api/v1/models' && method === 'GET') {
    await services.auth.require(authRequestOf(req, 'rest'));
    const limit = url.searchParams.get('limit');
    const page = await services.registry.list(
      { task: url.searchParams.get('task') ?? undefined, search: url.searchParams.get('search') ?? undefined },
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
    await services.auth.require(authRequestOf(req, 'rest'));
    const model = await services.registry.require(pathParam(m[1]!, 'model'));
    const [status] = await services.registry.statusesOf([model.id]);
    sendJson(res, 200, { model: modelJson(model, status!), status: 'ok' });
    return true;
  }
  m = MODEL_INFERENCE.exec(path);
  if (m) {
    if (method !== 'POST') throw new McpError('MCP_BAD_REQUEST', 'use POST for inference', { status: 405 });
    const principal = await services.auth.require(authRequestOf(req, 'rest'));
    const body = await readJson(req, services.config.server.maxBodyBytes);
    if (!body || typeof body !== 'object' || Array.isArray(body))
      throw new McpError('MCP_VALIDATION_FAILED', 'body: must be a JSON object', { details: { path: 'body' } });
    const b = body as Record<string, unknown>;
    if (b.version !== undefined && typeof b.version !== 'string')
      throw new McpError('MCP_VALIDATION_FAILED', 'version: must be a string', { details: { path: 'version' } });
    const modelId = pathParam(m[1]!, 'model');
    const result = await services.inference.infer(
      buildInferenceRequest({
        headers: req.headers,
        id: x.requestId,
        model: modelId,
        version: typeof b.version === 'string' ? b.version : undefined,
        input: restInput(b),
        entry: 'rest',
        ip: req.socket.remoteAddress,
        signal: x.signal,
        principal,
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
    return true;
  }
  return false;
}
