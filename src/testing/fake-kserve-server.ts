/**
 * A cheap KServe v2 / Triton-compatible server on 127.0.0.1 (raw node:http): server health
 * and metadata, model metadata (optionally per version), model ready, and infer, where every
 * numeric input is answered by an output with the same shape and the values doubled.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { AnswerTimers, listenOnLoopback, tallyingListener, withCounters, type RequestTally, type ServerCounters } from './loopback-server.ts';

export interface FakeKServeTensorMeta {
  name: string;
  datatype: string;
  shape: number[];
}

export interface FakeKServeModel {
  name: string;
  versions: string[];
  platform: string;
  inputs: FakeKServeTensorMeta[];
  outputs: FakeKServeTensorMeta[];
}

export interface FakeKServeBehavior {
  models: FakeKServeModel[];
  /** Delay before every answer. */
  delayMs: number;
  /** Extra delay before infer answers only (metadata and readiness answer at once): a slow model. */
  inferDelayMs: number;
  /** Model and server readiness. */
  ready: boolean;
  /** Answer infer calls with this status and body instead. */
  status?: number;
  errorBody?: unknown;
  errorHeaders?: Record<string, string>;
  /** Accept requests and never answer. */
  hang: boolean;
}

export interface FakeKServeServer extends ServerCounters {
  /** `http://127.0.0.1:port` (the backend `endpoint`). */
  readonly url: string;
  readonly lastRequest: { method: string; path: string; headers: IncomingMessage['headers']; body: unknown } | undefined;
  setBehavior(behavior: Partial<FakeKServeBehavior>): void;
  close(): Promise<void>;
}

export const DOUBLER_MODEL: FakeKServeModel = {
  name: 'doubler',
  versions: ['1', '2'],
  platform: 'fake',
  inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [-1, 4] }],
  outputs: [{ name: 'OUTPUT0', datatype: 'FP32', shape: [-1, 4] }],
};

const DEFAULTS: FakeKServeBehavior = { models: [DOUBLER_MODEL], delayMs: 0, inferDelayMs: 0, ready: true, hang: false };
const JSON_HEADERS = { 'content-type': 'application/json' };
const NUMERIC = new Set(['UINT8', 'UINT16', 'UINT32', 'UINT64', 'INT8', 'INT16', 'INT32', 'INT64', 'FP16', 'FP32', 'FP64']);
const ROUTE = /^\/v2\/models\/([^/]+)(?:\/versions\/([^/]+))?(\/ready|\/infer)?$/;

interface InferRequestBody {
  id?: string;
  inputs?: Array<{ name: string; shape: number[]; datatype: string; data: unknown[] }>;
  outputs?: Array<{ name: string }>;
}

export async function startFakeKServe(opts: Partial<FakeKServeBehavior> = {}): Promise<FakeKServeServer> {
  let behavior: FakeKServeBehavior = { ...DEFAULTS, ...opts };
  const tally: RequestTally = { requests: 0, aborted: 0, open: 0, counts: {} };
  let lastRequest: FakeKServeServer['lastRequest'];
  const timers = new AnswerTimers();

  const send = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    const buf = Buffer.from(JSON.stringify(body));
    res.writeHead(status, { ...JSON_HEADERS, ...headers, 'content-length': String(buf.length) });
    res.end(buf);
  };

  function route(req: IncomingMessage, res: ServerResponse, body: unknown): void {
    const b = behavior;
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (req.method === 'GET' && path === '/v2/health/live') {
      send(res, 200, { live: true });
      return;
    }
    if (req.method === 'GET' && path === '/v2/health/ready') {
      send(res, b.ready ? 200 : 503, { ready: b.ready });
      return;
    }
    if (req.method === 'GET' && path === '/v2') {
      send(res, 200, { name: 'fake-kserve', version: '0.0.0', extensions: [] });
      return;
    }
    const m = ROUTE.exec(path);
    if (!m) {
      send(res, 404, { error: `no route ${path}` });
      return;
    }
    const [, name, version, action] = m;
    const model = b.models.find((x) => x.name === decodeURIComponent(name ?? ''));
    if (!model) {
      send(res, 404, { error: `Request for unknown model: '${name}' is not found` });
      return;
    }
    if (version !== undefined && !model.versions.includes(version)) {
      send(res, 404, { error: `Request for unknown model: '${name}' version ${version} is not found` });
      return;
    }
    if (req.method === 'GET' && action === undefined) {
      send(res, 200, { name: model.name, versions: model.versions, platform: model.platform, inputs: model.inputs, outputs: model.outputs });
      return;
    }
    if (req.method === 'GET' && action === '/ready') {
      send(res, b.ready ? 200 : 400, { ready: b.ready });
      return;
    }
    if (req.method === 'POST' && action === '/infer') {
      if (b.inferDelayMs > 0) {
        timers.after(b.inferDelayMs, () => {
          if (!res.destroyed) infer(res, b, model, version, body);
        });
        return;
      }
      infer(res, b, model, version, body);
      return;
    }
    send(res, 405, { error: 'method not allowed' });
  }

  function infer(res: ServerResponse, b: FakeKServeBehavior, model: FakeKServeModel, version: string | undefined, body: unknown): void {
    if (b.status !== undefined) {
      send(res, b.status, b.errorBody ?? { error: `fake error ${b.status}` }, b.errorHeaders);
      return;
    }
    const r = (body ?? {}) as InferRequestBody;
    if (!Array.isArray(r.inputs)) {
      send(res, 400, { error: 'inputs is required' });
      return;
    }
    let outputs = r.inputs.map((input, i) => ({
      name: model.outputs[i]?.name ?? `OUTPUT${i}`,
      shape: input.shape,
      datatype: input.datatype,
      data: NUMERIC.has(input.datatype) ? input.data.map((v) => Number(v) * 2) : input.data,
    }));
    if (Array.isArray(r.outputs) && r.outputs.length > 0) {
      const wanted = new Set(r.outputs.map((o) => o.name));
      outputs = outputs.filter((o) => wanted.has(o.name));
    }
    send(res, 200, { model_name: model.name, model_version: version ?? model.versions.at(-1) ?? '1', id: r.id ?? '', outputs });
  }

  const lb = await listenOnLoopback(
    tallyingListener(tally, (req, res, raw, path) => {
      let body: unknown;
      if (raw !== '') {
        try {
          body = JSON.parse(raw);
        } catch {
          send(res, 400, { error: 'invalid JSON' });
          return;
        }
      }
      lastRequest = { method: req.method ?? 'GET', path, headers: req.headers, body };
      if (behavior.hang) return;
      if (behavior.delayMs > 0) {
        timers.after(behavior.delayMs, () => {
          if (!res.destroyed) route(req, res, body);
        });
      } else {
        route(req, res, body);
      }
    }),
  );

  const server: Omit<FakeKServeServer, keyof ServerCounters> = {
    url: lb.origin,
    get lastRequest() {
      return lastRequest;
    },
    setBehavior(b) {
      behavior = { ...DEFAULTS, ...b };
    },
    async close() {
      timers.clear();
      await lb.close();
    },
  };
  return withCounters(server, tally, lb);
}
