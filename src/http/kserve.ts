import { McpError } from '../errors.ts';
import { buildInferenceRequest, type RequestParts } from '../inference/request.ts';
import { setRateLimitHeaders } from '../limits/headers.ts';
import type { InferenceRequest, InferenceTask } from '../inference/types.ts';
import type { ModelView } from '../models/fleet.ts';
import type { Services } from '../services.ts';
import { tracedAuth } from '../tracing/entry.ts';
import type { EntryInfo } from '../tracing/tracing.ts';
import { authRequestOf, inClientTerms, pathParam, readJson, sendJson, cacheHeader } from './common.ts';
import { handleRepository } from './kserve-repository.ts';
import type { HttpAdapter } from './server.ts';

const MODEL_PATH = /^\/v2\/models\/([^/]+)(?:\/versions\/([^/]+))?(\/ready|\/infer)?$/;
/** KServe parameter name of each generation parameter (what /infer reads from `parameters`). */
const GENERATION_PARAMETERS = [
  ['max_tokens', 'maxTokens'],
  ['temperature', 'temperature'],
  ['top_k', 'topK'],
  ['top_p', 'topP'],
  ['seed', 'seed'],
  ['stop', 'stop'],
] as const;
/** Generative models take a BYTES tensor with one of these names (Triton's generate convention). */
const TEXT_INPUTS = new Set(['text_input', 'prompt', 'text']);

async function modelView(services: Services, model: string, version?: string): Promise<ModelView> {
  const view = await services.instances.current(model);
  if (!view) throw new McpError('MCP_MODEL_NOT_FOUND', `no model "${model}"`, { details: { model } });
  if (version && !view.versions.has(version))
    throw new McpError('MCP_VERSION_NOT_FOUND', `model "${model}" has no version "${version}"`, { details: { model, version } });
  return view;
}

function readyInstances(view: ModelView, version?: string) {
  const v = version ?? view.defaultVersion ?? undefined;
  return [...view.versions.entries()]
    .filter(([name]) => !v || name === v)
    .flatMap(([, hs]) => hs)
    .filter((h) => h.status === 'ready' && h.loaded);
}

/** The inference input a KServe v2 body asks for, not yet validated (buildInferenceRequest does that). */
function toInput(view: ModelView, body: Record<string, unknown>): { task: InferenceTask } & Record<string, unknown> {
  const inputs = body.inputs;
  if (!Array.isArray(inputs) || inputs.length === 0)
    throw new McpError('MCP_VALIDATION_FAILED', 'inputs: a non-empty array of tensors', { details: { path: 'inputs' } });
  const params = (body.parameters && typeof body.parameters === 'object' ? body.parameters : {}) as Record<string, unknown>;
  const text = inputs.find((t: { name?: string; datatype?: string }) => t && TEXT_INPUTS.has(String(t.name)) && t.datatype === 'BYTES') as
    { name: string; data?: unknown } | undefined;
  if (view.task !== 'tensor' && text) {
    const parameters: Record<string, unknown> = {};
    for (const [k, to] of GENERATION_PARAMETERS) if (params[k] !== undefined) parameters[to] = params[k];
    const data = text.data;
    if (!Array.isArray(data) || data.length !== 1 || typeof data[0] !== 'string') {
      const path = `inputs[${inputs.indexOf(text)}].data`;
      throw new McpError('MCP_VALIDATION_FAILED', `${path}: one string (a BYTES tensor of shape [1])`, { details: { path } });
    }
    return { task: 'generate', prompt: data[0], parameters };
  }
  const outputs = Array.isArray(body.outputs) ? (body.outputs as Array<{ name?: unknown }>).map((o) => String(o?.name)) : undefined;
  return { task: 'tensor', tensors: inputs, ...(outputs ? { outputs } : {}) };
}

/**
 * Each input tensor's data as the flat row-major array the inference input carries: KServe lets a
 * client nest it along the shape (`[[1, 2], [3, 4]]` for shape [2, 2]). Its element count must be
 * the product of the shape's dimensions (MCP_VALIDATION_FAILED naming `inputs[i].data` otherwise).
 * Anything that is not a tensor object is left for the inference input's schema to refuse.
 */
function flatInputs(inputs: unknown): unknown {
  if (!Array.isArray(inputs)) return inputs;
  return inputs.map((t: unknown, i) => {
    if (!t || typeof t !== 'object' || Array.isArray(t)) return t;
    const { shape, data } = t as { shape?: unknown; data?: unknown };
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
      const path = `inputs[${i}].shape`;
      throw new McpError('MCP_VALIDATION_FAILED', `${path}: an array of non-negative integers`, { details: { path } });
    }
    if (!Array.isArray(data)) {
      const path = `inputs[${i}].data`;
      throw new McpError('MCP_VALIDATION_FAILED', `${path}: an array of the tensor's elements, flat or nested along its shape`, { details: { path } });
    }
    const flat = data.length > 0 && Array.isArray(data[0]) ? data.flat(Math.max(1, shape.length - 1)) : data;
    const elements = (shape as number[]).reduce((a, b) => a * b, 1);
    if (flat.length !== elements) {
      const path = `inputs[${i}].data`;
      throw new McpError('MCP_VALIDATION_FAILED', `${path}: shape [${shape.join(',')}] holds ${elements} element(s), data has ${flat.length}`, {
        details: { path, shape, elements: flat.length },
      });
    }
    return flat === data ? t : { ...t, data: flat };
  });
}

/** The KServe body field an internal input path came from (`input.tensors.0.datatype` → `inputs[0].datatype`, `input.parameters.topK` → `parameters.top_k`). */
function kserveParam(body: Record<string, unknown>, path: string): string {
  const [root, field, index, ...rest] = path.split('.');
  if (root !== 'input') return path;
  const tail = [index, ...rest].filter((x) => x !== undefined).join('.');
  if (field === 'tensors') return index === undefined ? 'inputs' : [`inputs[${index}]`, ...rest].join('.');
  if (field === 'outputs') return 'outputs';
  if (field === 'parameters') return `parameters.${GENERATION_PARAMETERS.find(([, to]) => to === index)?.[0] ?? tail}`;
  if (field === 'prompt') {
    const inputs = body.inputs as Array<{ name?: string }>;
    return `inputs[${inputs.findIndex((t) => TEXT_INPUTS.has(String(t?.name)))}].data`;
  }
  return path;
}

/** Builds the inference request; a validation error names the KServe body field (kserveParam), not the internal input's path. */
function buildRequest(body: Record<string, unknown>, parts: RequestParts): InferenceRequest {
  try {
    return buildInferenceRequest(parts);
  } catch (err) {
    throw inClientTerms(err, (path) => kserveParam(body, path));
  }
}

const KSERVE_ENTRY: EntryInfo = { entry: 'kserve', name: 'POST /v2/models/{name}/infer', method: 'POST', route: '/v2/models/{name}/infer' };

/** KServe Open Inference Protocol v2 under /v2. */
export const kserveAdapter: HttpAdapter = {
  prefix: '/v2',
  errorBody: (e) => ({ error: e.message, code: e.code }),
  async handle(services, x) {
    const { req, res, path } = x;
    if (path === '/v2' || path === '/v2/') {
      await services.auth.require(authRequestOf(req, 'kserve'));
      // only what is served here: Triton's model repository extension (/v2/repository/…)
      sendJson(res, 200, { name: 'capibara-mcp', version: '1', extensions: ['model_repository'] });
      return true;
    }
    if (path === '/v2/health/live') {
      sendJson(res, 200, { live: true });
      return true;
    }
    if (path === '/v2/health/ready') {
      const r = await services.readiness();
      sendJson(res, r.ready ? 200 : 503, { ready: r.ready });
      return true;
    }
    if (path.startsWith('/v2/repository/')) return handleRepository(services, x);
    const m = MODEL_PATH.exec(path);
    if (!m) return false;
    const action = m[3];
    const permission = action === '/infer' ? 'inference:invoke' : 'models:read';
    const trace = action === '/infer' && req.method === 'POST' ? services.tracing?.begin(KSERVE_ENTRY, req.headers) : undefined;
    try {
      const principal = await tracedAuth(trace, services.auth.requirePermission(authRequestOf(req, 'kserve'), permission));
      const model = pathParam(m[1]!, 'model');
      services.auth.authorize(principal, permission, model);
      const version = m[2] ? pathParam(m[2], 'version') : undefined;
      const view = await modelView(services, model, version);
      if (!action && req.method === 'GET') {
        // Generative models are served through text_input/text_output (what /infer accepts for them),
        // whatever tensors the model uses inside; tensor models show their own signature.
        const textSig = { inputs: [{ name: 'text_input', datatype: 'BYTES', shape: [1] }], outputs: [{ name: 'text_output', datatype: 'BYTES', shape: [1] }] };
        const signature = view.task === 'tensor' ? readyInstances(view, version).find((h) => h.loaded?.signature)?.loaded?.signature : textSig;
        sendJson(res, 200, {
          name: model,
          versions: [...view.versions.keys()],
          platform: 'capibara-mcp',
          inputs: signature?.inputs ?? [],
          outputs: signature?.outputs ?? [],
        });
        return true;
      }
      if (action === '/ready' && req.method === 'GET') {
        const ready = readyInstances(view, version).length > 0;
        sendJson(res, ready ? 200 : 400, { name: model, ready });
        return true;
      }
      if (action === '/infer' && req.method === 'POST') {
        const raw = await readJson(req, services.config.server.maxBodyBytes);
        if (!raw || typeof raw !== 'object' || Array.isArray(raw))
          throw new McpError('MCP_VALIDATION_FAILED', 'the body must be a JSON object', { details: { path: 'body' } });
        const body = { ...(raw as Record<string, unknown>) };
        body.inputs = flatInputs(body.inputs);
        const request = buildRequest(body, {
          headers: req.headers,
          id: x.requestId,
          model,
          version,
          input: toInput(view, body),
          entry: 'kserve',
          ip: req.socket.remoteAddress,
          onLimits: (p) => setRateLimitHeaders(res, p),
          onCache: cacheHeader(res),
          signal: x.signal,
          principal,
          trace,
        });
        const r = await services.inference.infer(request);
        const outputs = request.input.task === 'tensor' ? (r.tensors ?? []) : [{ name: 'text_output', datatype: 'BYTES', shape: [1], data: [r.text ?? ''] }];
        sendJson(res, 200, { model_name: model, model_version: r.version, id: typeof body.id === 'string' ? body.id : r.id, outputs });
        return true;
      }
      throw new McpError('MCP_BAD_REQUEST', `method ${req.method} not allowed on ${path}`, { status: 405 });
    } catch (err) {
      trace?.failed(err);
      throw err;
    }
  },
};
