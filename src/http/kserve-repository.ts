/**
 * Triton's model repository extension of KServe v2 (`/v2/repository/…`): the index of model versions
 * and their state, and load / unload of a model, which are AdminService.loadModel / unloadModel (what
 * GraphQL's loadModel / unloadModel call) with the same permissions (models:read, models:write).
 */
import { auditContextOf, runWithAuditContext } from '../audit/context.ts';
import { McpError, toMcpError } from '../errors.ts';
import type { Principal } from '../inference/types.ts';
import type { Services } from '../services.ts';
import { authRequestOf, pathParam, readJson, sendJson, type HttpExchange } from './common.ts';

const REPOSITORY_MODEL_PATH = /^\/v2\/repository\/models\/([^/]+)\/(load|unload)$/;

/** Whether the principal may do this to the model (same permissions as GraphQL's models:read / models:write fields). */
async function allowed(services: Services, x: HttpExchange, permission: 'models:read' | 'models:write', model?: string): Promise<Principal> {
  const principal = await services.auth.requirePermission(authRequestOf(x.req, 'kserve'), permission);
  if (model !== undefined) services.auth.authorize(principal, permission, model);
  return principal;
}

/** An optional JSON object body (Triton's repository calls may send none). */
async function optionalObject(services: Services, x: HttpExchange): Promise<Record<string, unknown>> {
  const body = await readJson(x.req, services.config.server.maxBodyBytes, {});
  if (!body || typeof body !== 'object' || Array.isArray(body))
    throw new McpError('MCP_VALIDATION_FAILED', 'the body must be a JSON object', { details: { path: 'body' } });
  return body as Record<string, unknown>;
}

/** One entry of Triton's repository index: a model version and its state on this gateway. */
interface RepositoryEntry {
  name: string;
  version: string;
  state: 'READY' | 'LOADING' | 'UNAVAILABLE';
  reason: string;
}

/**
 * Triton's repository index: every model the principal may read, one entry per version, READY when an
 * instance of it is ready here (what /v2/models/{m}/ready answers), LOADING while one loads, else
 * UNAVAILABLE with why (the instances' status reason, or their status). `{"ready": true}` keeps READY ones.
 */
async function repositoryIndex(services: Services, principal: Principal, readyOnly: boolean): Promise<RepositoryEntry[]> {
  const out: RepositoryEntry[] = [];
  let after: string | undefined;
  do {
    const page = await services.registry.list({ ids: principal.models }, { first: 500, after });
    const rows = await services.registry.instancesByModel(page.items.map((m) => m.id));
    for (const [i, m] of page.items.entries()) {
      const view = await services.instances.current(m.id);
      if (!view) continue;
      if (view.versions.size === 0) out.push({ name: m.id, version: '', state: 'UNAVAILABLE', reason: 'no version' });
      for (const [version, handles] of view.versions) {
        const ids = new Set(handles.map((h) => h.id));
        const mine = (rows[i] ?? []).filter((r) => ids.has(r.id));
        let state: RepositoryEntry['state'] = 'UNAVAILABLE';
        if (handles.some((h) => h.status === 'ready' && h.loaded && !h.draining)) state = 'READY';
        else if (handles.some((h) => h.status === 'loading')) state = 'LOADING';
        const why =
          mine.find((r) => r.statusReason)?.statusReason ??
          (handles.length ? [...new Set(handles.map((h) => (h.draining ? 'draining' : h.status)))].join(', ') : 'no instance');
        out.push({ name: m.id, version, state, reason: state === 'READY' ? '' : why });
      }
    }
    after = page.hasNextPage ? (page.endCursor ?? undefined) : undefined;
  } while (after);
  return readyOnly ? out.filter((e) => e.state === 'READY') : out;
}

/** Triton's model repository extension: index, load and unload (the admin operations loadModel / unloadModel); false when no route matched. */
export async function handleRepository(services: Services, x: HttpExchange): Promise<boolean> {
  const { req, res, path } = x;
  if (path === '/v2/repository/index') {
    if (req.method !== 'POST') throw new McpError('MCP_BAD_REQUEST', `method ${req.method} not allowed on ${path}`, { status: 405 });
    const principal = await allowed(services, x, 'models:read');
    const body = await optionalObject(services, x);
    if (body.ready !== undefined && typeof body.ready !== 'boolean')
      throw new McpError('MCP_VALIDATION_FAILED', 'ready: a boolean', { details: { path: 'ready' } });
    sendJson(res, 200, await repositoryIndex(services, principal, body.ready === true));
    return true;
  }
  const m = REPOSITORY_MODEL_PATH.exec(path);
  if (!m) return false;
  if (req.method !== 'POST') throw new McpError('MCP_BAD_REQUEST', `method ${req.method} not allowed on ${path}`, { status: 405 });
  const model = pathParam(m[1]!, 'model');
  const action = m[2] as 'load' | 'unload';
  const principal = await allowed(services, x, 'models:write', model);
  const body = await optionalObject(services, x);
  const params = body.parameters ?? {};
  if (typeof params !== 'object' || params === null || Array.isArray(params))
    throw new McpError('MCP_VALIDATION_FAILED', 'parameters: a JSON object', { details: { path: 'parameters' } });
  // Triton's load parameters replace the model's config or files: not something this gateway takes from a client.
  const unsupported = Object.keys(params).find((k) => !(action === 'unload' && k === 'unload_dependents'));
  if (unsupported || Object.keys(body).some((k) => k !== 'parameters')) {
    const name = unsupported ? `parameters.${unsupported}` : Object.keys(body).find((k) => k !== 'parameters')!;
    throw new McpError('MCP_UNSUPPORTED_PARAMETER', `unsupported parameter: ${name}`, { details: { path: name } });
  }
  const actx = auditContextOf(principal, req.socket.remoteAddress, x.requestId);
  const audit = { ...actx, action: `model.${action}`, target: model, model };
  try {
    await runWithAuditContext(actx, () => (action === 'load' ? services.admin.loadModel(model) : services.admin.unloadModel(model)));
  } catch (err) {
    const e = toMcpError(err);
    await services.audit.record({ ...audit, outcome: 'failed', details: { entry: 'kserve', code: e.code } }, { durable: true }).catch(() => {});
    throw err;
  }
  // durable before the answer, as a GraphQL mutation's row
  await services.audit.record({ ...audit, outcome: 'ok', details: { entry: 'kserve' } }, { durable: true });
  // Triton answers a successful load or unload with 200 and no body.
  res.writeHead(200, { 'content-length': '0' });
  res.end();
  return true;
}
