import { McpError } from '../errors.ts';
import { buildInferenceRequest } from '../inference/request.ts';
import type { InferenceTask } from '../inference/types.ts';
import type { ModelView } from '../models/fleet.ts';
import type { Services } from '../services.ts';
import { authRequestOf, pathParam, readJson, sendJson } from './common.ts';
import type { HttpAdapter } from './server.ts';

const MODEL_PATH = /^\/v2\/models\/([^/]+)(?:\/versions\/([^/]+))?(\/ready|\/infer)?$/;
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
    for (const [k, to] of [
      ['max_tokens', 'maxTokens'],
      ['temperature', 'temperature'],
      ['top_k', 'topK'],
      ['top_p', 'topP'],
      ['seed', 'seed'],
      ['stop', 'stop'],
    ] as const) {
      if (params[k] !== undefined) parameters[to] = params[k];
    }
    const data = text.data;
    if (!Array.isArray(data) || data.length !== 1 || typeof data[0] !== 'string') {
      throw new McpError('MCP_VALIDATION_FAILED', `inputs.${text.name}.data: one string (a BYTES tensor of shape [1])`, {
        details: { path: `inputs.${text.name}.data` },
      });
    }
    return { task: 'generate', prompt: data[0], parameters };
  }
  const outputs = Array.isArray(body.outputs) ? (body.outputs as Array<{ name?: unknown }>).map((o) => String(o?.name)) : undefined;
  return { task: 'tensor', tensors: inputs, ...(outputs ? { outputs } : {}) };
}

/** KServe Open Inference Protocol v2 under /v2. */
export const kserveAdapter: HttpAdapter = {
  prefix: '/v2',
  errorBody: (e) => ({ error: e.message, code: e.code }),
  async handle(services, x) {
    const { req, res, path } = x;
    if (path === '/v2' || path === '/v2/') {
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
    const m = MODEL_PATH.exec(path);
    if (!m) return false;
    const principal = await services.auth.require(authRequestOf(req, 'kserve'));
    const model = pathParam(m[1]!, 'model');
    const version = m[2] ? pathParam(m[2], 'version') : undefined;
    const action = m[3];
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
      const body = raw as Record<string, unknown>;
      const request = buildInferenceRequest({
        headers: req.headers,
        id: x.requestId,
        model,
        version,
        input: toInput(view, body),
        entry: 'kserve',
        ip: req.socket.remoteAddress,
        signal: x.signal,
        principal,
      });
      const r = await services.inference.infer(request);
      const outputs = request.input.task === 'tensor' ? (r.tensors ?? []) : [{ name: 'text_output', datatype: 'BYTES', shape: [1], data: [r.text ?? ''] }];
      sendJson(res, 200, { model_name: model, model_version: r.version, id: typeof body.id === 'string' ? body.id : r.id, outputs });
      return true;
    }
    throw new McpError('MCP_BAD_REQUEST', `method ${req.method} not allowed on ${path}`, { status: 405 });
  },
};
