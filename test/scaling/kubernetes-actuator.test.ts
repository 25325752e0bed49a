import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { KubernetesActuator } from '../../src/scaling/actuators/kubernetes.ts';
import type { ScalingTarget } from '../../src/scaling/actuator.ts';

/** A loopback API server implementing the scale subresource of one Deployment and one StatefulSet. */
interface Seen {
  method: string;
  url: string;
  auth: string | undefined;
  contentType: string | undefined;
  body: unknown;
}
const seen: Seen[] = [];
const objects = new Map<string, { replicas: number; rv: number }>();
/** Faults to inject, in order, before the next write: a status, or a concurrent change (the write then sees a stale version). */
let faults: Array<number | 'bump'> = [];
let server: Server;
let base = '';
let dir = '';

async function read(req: IncomingMessage): Promise<string> {
  let s = '';
  for await (const c of req) s += c;
  return s;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'k8s-sa-'));
  writeFileSync(join(dir, 'token'), 'sa-token-1\n');
  writeFileSync(join(dir, 'namespace'), 'serving\n');
  server = createServer(async (req, res) => {
    const raw = await read(req);
    const body = raw ? JSON.parse(raw) : undefined;
    seen.push({ method: req.method!, url: req.url!, auth: req.headers.authorization, contentType: req.headers['content-type'], body });
    const m = /^\/apis\/apps\/v1\/namespaces\/([^/]+)\/(deployments|statefulsets)\/([^/]+)\/scale$/.exec(req.url!);
    const obj = m ? objects.get(`${m[1]}/${m[2]}/${m[3]}`) : undefined;
    const send = (status: number, o: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(o));
    };
    if (!m || !obj) return send(404, { kind: 'Status', message: 'not found' });
    const scale = () => ({
      kind: 'Scale',
      apiVersion: 'autoscaling/v1',
      metadata: { name: m[3], namespace: m[1], resourceVersion: String(obj.rv) },
      spec: { replicas: obj.replicas },
      status: { replicas: obj.replicas },
    });
    if (req.method === 'GET') return send(200, scale());
    const fault = faults.shift();
    if (fault === 'bump') obj.rv++;
    else if (typeof fault === 'number') return send(fault, { kind: 'Status', message: `injected ${fault}` });
    const rv = req.method === 'PATCH' ? body?.metadata?.resourceVersion : body?.metadata?.resourceVersion;
    if (rv !== undefined && rv !== String(obj.rv)) return send(409, { kind: 'Status', reason: 'Conflict', message: 'the object has been modified' });
    if (req.method === 'PATCH' && req.headers['content-type'] !== 'application/merge-patch+json') return send(415, { message: 'unsupported patch type' });
    obj.replicas = body.spec.replicas;
    obj.rv++;
    return send(200, scale());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((r) => server.close(r));
});

beforeEach(() => {
  seen.length = 0;
  faults = [];
  objects.set('serving/deployments/llm', { replicas: 1, rv: 100 });
  objects.set('serving/statefulsets/tpu', { replicas: 2, rv: 7 });
});

const actuator = (extra: Record<string, unknown> = {}) =>
  new KubernetesActuator('k8s', {
    apiServer: base,
    tokenFile: join(dir, 'token'),
    caFile: join(dir, 'ca.crt'),
    namespaceFile: join(dir, 'namespace'),
    initialBackoffMs: 5,
    maxBackoffMs: 20,
    ...extra,
  });
const target = (a: KubernetesActuator, options: Record<string, unknown>): ScalingTarget => ({
  model: 'm',
  version: 'v1',
  options: a.checkOptions(options),
  drainMs: 0,
});
const PATH = '/apis/apps/v1/namespaces/serving/deployments/llm/scale';

describe('kubernetes actuator: the scale subresource', () => {
  it('reads the replicas, then PATCHes a merge patch with the resourceVersion read and the bearer token', async () => {
    const a = actuator();
    const t = target(a, { name: 'llm' });
    expect(await a.current(t)).toBe(1);
    await a.scaleTo(t, 3, new AbortController().signal);
    expect(seen.map((s) => `${s.method} ${s.url}`)).toEqual([`GET ${PATH}`, `GET ${PATH}`, `PATCH ${PATH}`]);
    expect(seen[2]).toEqual({
      method: 'PATCH',
      url: PATH,
      auth: 'Bearer sa-token-1',
      contentType: 'application/merge-patch+json',
      body: { metadata: { resourceVersion: '100' }, spec: { replicas: 3 } },
    });
    expect(objects.get('serving/deployments/llm')).toEqual({ replicas: 3, rv: 101 });
    // already there: one GET, no write
    seen.length = 0;
    await a.scaleTo(t, 3, new AbortController().signal);
    expect(seen.map((s) => s.method)).toEqual(['GET']);
  });

  it('a 409 conflict (someone changed it meanwhile) reads again and writes with the new resourceVersion', async () => {
    const a = actuator();
    faults = ['bump'];
    await a.scaleTo(target(a, { name: 'llm' }), 2, new AbortController().signal);
    expect(seen.map((s) => s.method)).toEqual(['GET', 'PATCH', 'GET', 'PATCH']);
    expect((seen[1]!.body as { metadata: { resourceVersion: string } }).metadata.resourceVersion).toBe('100');
    expect((seen[3]!.body as { metadata: { resourceVersion: string } }).metadata.resourceVersion).toBe('101');
    expect(objects.get('serving/deployments/llm')!.replicas).toBe(2);
  });

  it('retries 503 and 429 with backoff, then succeeds; the rotated token is read again', async () => {
    const a = actuator();
    faults = [503, 429];
    const t = target(a, { name: 'llm' });
    const p = a.scaleTo(t, 4, new AbortController().signal);
    writeFileSync(join(dir, 'token'), 'sa-token-2\n');
    await p;
    expect(seen.filter((s) => s.method === 'PATCH')).toHaveLength(3);
    expect(objects.get('serving/deployments/llm')!.replicas).toBe(4);
    expect(seen[seen.length - 1]!.auth).toBe('Bearer sa-token-2');
    writeFileSync(join(dir, 'token'), 'sa-token-1\n');
  });

  it('gives up after maxAttempts with a coded error that carries no token', async () => {
    const a = actuator({ maxAttempts: 3 });
    faults = [500, 500, 500, 500];
    const err = await a.scaleTo(target(a, { name: 'llm' }), 5, new AbortController().signal).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'MCP_UPSTREAM_UNAVAILABLE' });
    expect(String((err as Error).message)).not.toMatch(/sa-token/);
    expect(seen.filter((s) => s.method === 'PATCH')).toHaveLength(3);
    expect(objects.get('serving/deployments/llm')!.replicas).toBe(1);
  });

  it('a 403 or a missing workload fails at once, without retries', async () => {
    const a = actuator();
    faults = [403];
    await expect(a.scaleTo(target(a, { name: 'llm' }), 2, new AbortController().signal)).rejects.toMatchObject({ code: 'MCP_UPSTREAM_ERROR' });
    expect(seen.filter((s) => s.method === 'PATCH')).toHaveLength(1);
    await expect(a.current(target(a, { name: 'nope' }))).rejects.toMatchObject({ code: 'MCP_UPSTREAM_ERROR', details: { status: 404 } });
  });

  it('replace mode PUTs the Scale object of a StatefulSet with its resourceVersion (namespace from the policy)', async () => {
    const a = actuator({ method: 'replace' });
    await a.scaleTo(target(a, { kind: 'statefulset', name: 'tpu', namespace: 'serving' }), 0, new AbortController().signal);
    const put = seen.find((s) => s.method === 'PUT')!;
    expect(put).toEqual({
      method: 'PUT',
      url: '/apis/apps/v1/namespaces/serving/statefulsets/tpu/scale',
      auth: 'Bearer sa-token-1',
      contentType: 'application/json',
      body: { apiVersion: 'autoscaling/v1', kind: 'Scale', metadata: { name: 'tpu', namespace: 'serving', resourceVersion: '7' }, spec: { replicas: 0 } },
    });
    expect(objects.get('serving/statefulsets/tpu')!.replicas).toBe(0);
  });

  it('in-cluster defaults: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT; options are validated', async () => {
    const a = new KubernetesActuator('k8s', { tokenFile: join(dir, 'token'), namespaceFile: join(dir, 'namespace'), maxAttempts: 1 }, {});
    await expect(a.current(target(a, { name: 'llm' }))).rejects.toMatchObject({
      code: 'MCP_UPSTREAM_UNAVAILABLE',
      message: expect.stringMatching(/KUBERNETES_SERVICE_HOST/),
    });
    expect(() => a.checkOptions({ name: 'Bad_Name' })).toThrow(/actuator\.options\.name/);
    expect(() => a.checkOptions({ name: 'x', replicas: 3 })).toThrow(/actuator\.options/);
  });
});
