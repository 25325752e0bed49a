import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { logSerializers } from '../../src/logging.ts';
import { KubernetesActuator } from '../../src/scaling/actuators/kubernetes.ts';
import type { ScalingTarget } from '../../src/scaling/actuator.ts';
import { startKubeApiServer, type KubeApiServer } from '../support/kube-api-server.ts';
import { issueServerCert, makeCa } from '../support/test-ca.ts';

const target = (a: KubernetesActuator, options: Record<string, unknown>): ScalingTarget => ({
  model: 'm',
  version: 'v1',
  options: a.checkOptions(options),
  drainMs: 0,
});
const PATH = '/apis/apps/v1/namespaces/serving/deployments/llm/scale';
const never = () => new AbortController().signal;
const seedObjects = (api: KubeApiServer) => {
  api.seen.length = 0;
  api.faults = [];
  api.refuseAll = undefined;
  api.objects.set('serving/deployments/llm', { replicas: 1, rv: 100 });
  api.objects.set('serving/statefulsets/tpu', { replicas: 2, rv: 7 });
};

describe('kubernetes actuator: the scale subresource (plain HTTP apiServer)', () => {
  let api: KubeApiServer;
  let dir = '';

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'k8s-sa-'));
    writeFileSync(join(dir, 'token'), 'sa-token-1\n');
    writeFileSync(join(dir, 'namespace'), 'serving\n');
    api = await startKubeApiServer();
  });
  afterAll(async () => {
    await api.close();
    rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(() => seedObjects(api));

  const actuator = (extra: Record<string, unknown> = {}) =>
    new KubernetesActuator('k8s', {
      apiServer: api.base,
      tokenFile: join(dir, 'token'),
      namespaceFile: join(dir, 'namespace'),
      initialBackoffMs: 5,
      maxBackoffMs: 20,
      ...extra,
    });

  it('reads the replicas, then PATCHes a merge patch with the resourceVersion read and the bearer token', async () => {
    const a = actuator();
    const t = target(a, { name: 'llm' });
    expect(await a.current(t)).toBe(1);
    await a.scaleTo(t, 3, never());
    expect(api.seen.map((s) => `${s.method} ${s.url}`)).toEqual([`GET ${PATH}`, `GET ${PATH}`, `PATCH ${PATH}`]);
    expect(api.seen[2]).toEqual({
      method: 'PATCH',
      url: PATH,
      auth: 'Bearer sa-token-1',
      contentType: 'application/merge-patch+json',
      body: { metadata: { resourceVersion: '100' }, spec: { replicas: 3 } },
    });
    expect(api.objects.get('serving/deployments/llm')).toEqual({ replicas: 3, rv: 101 });
    // already there: one GET, no write
    api.seen.length = 0;
    await a.scaleTo(t, 3, never());
    expect(api.seen.map((s) => s.method)).toEqual(['GET']);
  });

  it('a 409 conflict (someone changed it meanwhile) reads again and writes with the new resourceVersion', async () => {
    const a = actuator();
    api.faults = ['bump'];
    await a.scaleTo(target(a, { name: 'llm' }), 2, never());
    expect(api.seen.map((s) => s.method)).toEqual(['GET', 'PATCH', 'GET', 'PATCH']);
    expect((api.seen[1]!.body as { metadata: { resourceVersion: string } }).metadata.resourceVersion).toBe('100');
    expect((api.seen[3]!.body as { metadata: { resourceVersion: string } }).metadata.resourceVersion).toBe('101');
    expect(api.objects.get('serving/deployments/llm')!.replicas).toBe(2);
  });

  it('retries 503 and 429 with backoff, then succeeds; the rotated token is read again', async () => {
    const a = actuator();
    api.faults = [503, 429];
    const t = target(a, { name: 'llm' });
    const p = a.scaleTo(t, 4, never());
    writeFileSync(join(dir, 'token'), 'sa-token-2\n');
    await p;
    expect(api.seen.filter((s) => s.method === 'PATCH')).toHaveLength(3);
    expect(api.objects.get('serving/deployments/llm')!.replicas).toBe(4);
    expect(api.seen[api.seen.length - 1]!.auth).toBe('Bearer sa-token-2');
    writeFileSync(join(dir, 'token'), 'sa-token-1\n');
  });

  it('gives up after maxAttempts with a coded error that carries no token', async () => {
    const a = actuator({ maxAttempts: 3 });
    api.faults = [500, 500, 500, 500];
    const err = await a.scaleTo(target(a, { name: 'llm' }), 5, never()).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'MCP_UPSTREAM_UNAVAILABLE' });
    expect(String((err as Error).message)).not.toMatch(/sa-token/);
    expect(api.seen.filter((s) => s.method === 'PATCH')).toHaveLength(3);
    expect(api.objects.get('serving/deployments/llm')!.replicas).toBe(1);
  });

  it('a 403 or a missing workload fails at once, without retries', async () => {
    const a = actuator();
    api.faults = [403];
    await expect(a.scaleTo(target(a, { name: 'llm' }), 2, never())).rejects.toMatchObject({ code: 'MCP_UPSTREAM_ERROR' });
    expect(api.seen.filter((s) => s.method === 'PATCH')).toHaveLength(1);
    await expect(a.current(target(a, { name: 'nope' }))).rejects.toMatchObject({ code: 'MCP_UPSTREAM_ERROR', details: { status: 404 } });
  });

  it('replace mode PUTs the Scale object of a StatefulSet with its resourceVersion (namespace from the policy)', async () => {
    const a = actuator({ method: 'replace' });
    await a.scaleTo(target(a, { kind: 'statefulset', name: 'tpu', namespace: 'serving' }), 0, never());
    const put = api.seen.find((s) => s.method === 'PUT')!;
    expect(put).toEqual({
      method: 'PUT',
      url: '/apis/apps/v1/namespaces/serving/statefulsets/tpu/scale',
      auth: 'Bearer sa-token-1',
      contentType: 'application/json',
      body: { apiVersion: 'autoscaling/v1', kind: 'Scale', metadata: { name: 'tpu', namespace: 'serving', resourceVersion: '7' }, spec: { replicas: 0 } },
    });
    expect(api.objects.get('serving/statefulsets/tpu')!.replicas).toBe(0);
  });

  it('not in a cluster and no apiServer: a config error, not retried; options are validated', async () => {
    const a = new KubernetesActuator('k8s', { tokenFile: join(dir, 'token'), namespaceFile: join(dir, 'namespace'), maxAttempts: 3 }, {});
    await expect(a.current(target(a, { name: 'llm' }))).rejects.toMatchObject({
      code: 'MCP_CONFIG_INVALID',
      message: expect.stringMatching(/KUBERNETES_SERVICE_HOST/),
    });
    expect(() => a.checkOptions({ name: 'Bad_Name' })).toThrow(/actuator\.options\.name/);
    expect(() => a.checkOptions({ name: 'x', replicas: 3 })).toThrow(/actuator\.options/);
  });
});

/**
 * In-cluster, as every real user runs it: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT,
 * the service account's token, namespace and CA files, no apiServer. A real HTTPS server on loopback
 * with a certificate (SAN IP:127.0.0.1) from a CA made with openssl, and a second server whose
 * certificate comes from another CA.
 */
describe('kubernetes actuator in the cluster: HTTPS with the cluster CA', () => {
  let dir = '';
  let sa = '';
  let api: KubeApiServer;
  let rogue: KubeApiServer;
  let clusterCa = '';
  let rogueCa = '';
  const TOKEN_A = 'eyJhbGciOiJSUzI1NiJ9.in-cluster-token-A';
  const TOKEN_B = 'eyJhbGciOiJSUzI1NiJ9.in-cluster-token-B';

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'k8s-tls-'));
    sa = join(dir, 'serviceaccount');
    mkdirSync(sa);
    const ca = makeCa(dir, 'cluster-ca');
    const other = makeCa(dir, 'rogue-ca');
    clusterCa = ca.cert;
    rogueCa = other.cert;
    api = await startKubeApiServer({ tls: issueServerCert(ca, dir, 'apiserver') });
    rogue = await startKubeApiServer({ tls: issueServerCert(other, dir, 'impostor') });
    writeFileSync(join(sa, 'ca.crt'), clusterCa);
    writeFileSync(join(sa, 'namespace'), 'serving');
  }, 60_000);
  afterAll(async () => {
    await api?.close();
    await rogue?.close();
    rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    seedObjects(api);
    seedObjects(rogue);
    rogue.connections = 0;
    writeFileSync(join(sa, 'token'), `${TOKEN_A}\n`);
    writeFileSync(join(sa, 'ca.crt'), clusterCa);
  });

  const inCluster = (server: KubeApiServer, extra: Record<string, unknown> = {}) =>
    new KubernetesActuator(
      'k8s',
      {
        tokenFile: join(sa, 'token'),
        caFile: join(sa, 'ca.crt'),
        namespaceFile: join(sa, 'namespace'),
        initialBackoffMs: 5,
        maxBackoffMs: 20,
        ...extra,
      },
      { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: String(server.port) },
    );
  /** The error as the scaling controller logs it (pino with the gateway's serializers), with its JSON and stack. */
  const everythingSaidAbout = (err: unknown): string => {
    const lines: string[] = [];
    pino({ serializers: logSerializers }, { write: (s: string) => void lines.push(s) }).warn({ err }, 'scaling actuation failed');
    return [lines.join(''), JSON.stringify(err), (err as Error).stack ?? '', String(err)].join('\n');
  };
  const pemBody = (pem: string) => pem.split('\n').filter((l) => l && !l.startsWith('-----'));

  it('a scale change is a GET then a PATCH over TLS with the bearer token and the namespace from the namespace file', async () => {
    const a = inCluster(api);
    try {
      const t = target(a, { name: 'llm' });
      expect(await a.current(t)).toBe(1);
      await a.scaleTo(t, 3, never());
      expect(api.seen.map((s) => `${s.method} ${s.url}`)).toEqual([`GET ${PATH}`, `GET ${PATH}`, `PATCH ${PATH}`]);
      expect(api.seen.every((s) => s.auth === `Bearer ${TOKEN_A}`)).toBe(true);
      expect(api.seen[2]).toMatchObject({ contentType: 'application/merge-patch+json', body: { metadata: { resourceVersion: '100' }, spec: { replicas: 3 } } });
      expect(api.objects.get('serving/deployments/llm')).toEqual({ replicas: 3, rv: 101 });

      // replace mode on a StatefulSet: a PUT of the Scale object
      const r = inCluster(api, { method: 'replace' });
      await r.scaleTo(target(r, { kind: 'statefulset', name: 'tpu' }), 5, never());
      await r.close();
      expect(api.seen.at(-1)).toMatchObject({ method: 'PUT', url: '/apis/apps/v1/namespaces/serving/statefulsets/tpu/scale', auth: `Bearer ${TOKEN_A}` });
      expect(api.objects.get('serving/statefulsets/tpu')!.replicas).toBe(5);
    } finally {
      await a.close();
    }
  });

  it('token rotation: the token file rewritten between two changes, the next change carries the new token', async () => {
    const a = inCluster(api);
    try {
      const t = target(a, { name: 'llm' });
      await a.scaleTo(t, 2, never());
      const first = api.seen.length;
      writeFileSync(join(sa, 'token'), `${TOKEN_B}\n`);
      await a.scaleTo(t, 4, never());
      expect(api.seen.slice(0, first).map((s) => s.auth)).toEqual(Array(first).fill(`Bearer ${TOKEN_A}`));
      expect(api.seen.slice(first).map((s) => s.auth)).toEqual([`Bearer ${TOKEN_B}`, `Bearer ${TOKEN_B}`]);
      expect(api.objects.get('serving/deployments/llm')!.replicas).toBe(4);
    } finally {
      await a.close();
    }
  });

  it('a server whose certificate another CA signed is refused: coded, one connection, no request, neither token nor CA in the error or the log', async () => {
    const a = inCluster(rogue, { maxAttempts: 6 });
    try {
      const err = await a.scaleTo(target(a, { name: 'llm' }), 3, never()).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'MCP_UPSTREAM_UNAVAILABLE', details: { actuator: 'k8s', tls: expect.any(String) } });
      expect((err as Error).message).toMatch(/certificate/);
      expect((err as Error).message).toContain(join(sa, 'ca.crt'));
      // not retried: one TCP connection, and the token never left the process
      expect(rogue.connections).toBe(1);
      expect(rogue.seen).toEqual([]);
      expect(rogue.objects.get('serving/deployments/llm')!.replicas).toBe(1);
      const said = everythingSaidAbout(err);
      expect(said).toContain('MCP_UPSTREAM_UNAVAILABLE');
      expect(said).not.toContain('in-cluster-token');
      for (const line of [...pemBody(clusterCa), ...pemBody(rogueCa)]) expect(said).not.toContain(line);
    } finally {
      await a.close();
    }
  });

  it('the CA file is read again for every call: once it holds the right CA, the same actuator gets through', async () => {
    writeFileSync(join(sa, 'ca.crt'), rogueCa);
    const a = inCluster(api);
    try {
      const t = target(a, { name: 'llm' });
      await expect(a.current(t)).rejects.toMatchObject({ code: 'MCP_UPSTREAM_UNAVAILABLE', details: { tls: expect.any(String) } });
      expect(api.seen).toEqual([]);
      writeFileSync(join(sa, 'ca.crt'), clusterCa);
      expect(await a.current(t)).toBe(1);
    } finally {
      await a.close();
    }
  });

  it('a missing, unreadable or empty CA file refuses the call (MCP_CONFIG_INVALID naming the file) instead of trusting the system CAs', async () => {
    const cases = { missing: join(sa, 'nope.crt'), directory: sa, garbage: join(dir, 'garbage.crt') };
    writeFileSync(cases.garbage, 'not a certificate\n');
    for (const [what, caFile] of Object.entries(cases)) {
      const a = inCluster(api, { caFile, maxAttempts: 6 });
      try {
        const err = await a.scaleTo(target(a, { name: 'llm' }), 3, never()).catch((e: unknown) => e);
        expect(err, what).toMatchObject({ code: 'MCP_CONFIG_INVALID', details: { actuator: 'k8s', caFile } });
        expect((err as Error).message, what).toContain(caFile);
        expect(everythingSaidAbout(err), what).not.toContain('in-cluster-token');
      } finally {
        await a.close();
      }
    }
    // no request went out, the token was never sent anywhere
    expect(api.seen).toEqual([]);
  });

  it('401 and 403 fail at once with a coded error that names the workload, not the token', async () => {
    const a = inCluster(api, { maxAttempts: 6 });
    try {
      api.refuseAll = 403;
      const forbidden = await a.scaleTo(target(a, { name: 'llm' }), 3, never()).catch((e: unknown) => e);
      expect(forbidden).toMatchObject({ code: 'MCP_UPSTREAM_ERROR', details: { status: 403, workload: 'deployment serving/llm' } });
      expect((forbidden as Error).message).toMatch(/deployment serving\/llm.*403.*deployments\/scale/);
      expect(api.seen).toHaveLength(1);

      api.seen.length = 0;
      api.refuseAll = 401;
      const unauthorized = await a.current(target(a, { kind: 'statefulset', name: 'tpu' })).catch((e: unknown) => e);
      expect(unauthorized).toMatchObject({ code: 'MCP_UPSTREAM_ERROR', details: { status: 401, workload: 'statefulset serving/tpu' } });
      expect((unauthorized as Error).message).toContain(join(sa, 'token'));
      expect(api.seen).toHaveLength(1);
      for (const e of [forbidden, unauthorized]) expect(everythingSaidAbout(e)).not.toContain('in-cluster-token');
    } finally {
      await a.close();
    }
  });
});
