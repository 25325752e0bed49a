/**
 * A loopback Kubernetes API server implementing the `scale` subresource of Deployments and
 * StatefulSets (GET, merge-patch PATCH, PUT with resourceVersion checks), over plain HTTP or over
 * HTTPS with a given certificate. Records every request; faults can be injected before writes.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';

export interface SeenRequest {
  method: string;
  url: string;
  auth: string | undefined;
  contentType: string | undefined;
  body: unknown;
}

export interface KubeApiServer {
  /** http(s)://127.0.0.1:<port> */
  base: string;
  port: number;
  seen: SeenRequest[];
  /** `<namespace>/<deployments|statefulsets>/<name>` → replicas and resourceVersion. */
  objects: Map<string, { replicas: number; rv: number }>;
  /** Faults to inject, in order, before the next write: a status, or a concurrent change (the write then sees a stale version). */
  faults: Array<number | 'bump'>;
  /** Answers every request (reads included) with this status while set (401, 403, …). */
  refuseAll: number | undefined;
  /** TCP connections accepted (a client refusing the certificate still connects once). */
  connections: number;
  close(): Promise<void>;
}

async function read(req: IncomingMessage): Promise<string> {
  let s = '';
  for await (const c of req) s += c;
  return s;
}

export async function startKubeApiServer(opts: { tls?: { key: string; cert: string } } = {}): Promise<KubeApiServer> {
  const api = {
    seen: [] as SeenRequest[],
    objects: new Map<string, { replicas: number; rv: number }>(),
    faults: [] as Array<number | 'bump'>,
    refuseAll: undefined as number | undefined,
    connections: 0,
  };
  const handler = async (req: IncomingMessage, res: ServerResponse) => {
    const raw = await read(req);
    let body: { metadata?: { resourceVersion?: string }; spec?: { replicas?: number } } | undefined;
    try {
      body = raw ? JSON.parse(raw) : undefined;
    } catch {
      body = undefined;
    }
    api.seen.push({ method: req.method!, url: req.url!, auth: req.headers.authorization, contentType: req.headers['content-type'], body });
    const send = (status: number, o: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(o));
    };
    if (api.refuseAll !== undefined) {
      const reason = api.refuseAll === 401 ? 'Unauthorized' : 'Forbidden';
      return send(api.refuseAll, { kind: 'Status', status: 'Failure', reason, code: api.refuseAll, message: `${reason.toLowerCase()}` });
    }
    const m = /^\/apis\/apps\/v1\/namespaces\/([^/]+)\/(deployments|statefulsets)\/([^/]+)\/scale$/.exec(req.url!);
    const obj = m ? api.objects.get(`${m[1]}/${m[2]}/${m[3]}`) : undefined;
    if (!m || !obj) return send(404, { kind: 'Status', message: 'not found' });
    const scale = () => ({
      kind: 'Scale',
      apiVersion: 'autoscaling/v1',
      metadata: { name: m[3], namespace: m[1], resourceVersion: String(obj.rv) },
      spec: { replicas: obj.replicas },
      status: { replicas: obj.replicas },
    });
    if (req.method === 'GET') return send(200, scale());
    if (req.method !== 'PATCH' && req.method !== 'PUT') return send(405, { kind: 'Status', message: 'method not allowed' });
    const fault = api.faults.shift();
    if (fault === 'bump') obj.rv++;
    else if (typeof fault === 'number') return send(fault, { kind: 'Status', message: `injected ${fault}` });
    const rv = body?.metadata?.resourceVersion;
    if (rv !== undefined && rv !== String(obj.rv)) return send(409, { kind: 'Status', reason: 'Conflict', message: 'the object has been modified' });
    if (req.method === 'PATCH' && req.headers['content-type'] !== 'application/merge-patch+json') return send(415, { message: 'unsupported patch type' });
    if (typeof body?.spec?.replicas !== 'number') return send(422, { kind: 'Status', message: 'spec.replicas required' });
    obj.replicas = body.spec.replicas;
    obj.rv++;
    return send(200, scale());
  };
  const server: Server = opts.tls ? createHttpsServer({ key: opts.tls.key, cert: opts.tls.cert }, handler) : createHttpServer(handler);
  server.on('connection', () => void api.connections++);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return Object.assign(api, {
    base: `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    port,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  });
}
