/**
 * Version skew on the worker protocol: a worker of a newer release sends registration and heartbeat
 * fields this gateway does not know yet (at the top and inside device and instance entries). They are
 * ignored, on every GraphQL path (Yoga, the direct JSON path, compiled execution once a document
 * repeats); known fields keep their types and bounds, and the body its size limit. Real gateway on
 * loopback, a real worker HTTP server registered and heartbeating by hand.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';
import { startFakeWorker, type FakeWorker } from './fake-workers.ts';
import { prepareWorker, waitFor, type GqlClient } from './support.ts';

const CALL_TOKEN = `mutation($i: WorkerCallTokenInput!) { workerCallToken(input: $i) }`;
const REGISTER = `mutation($i: RegisterWorkerInput!) {
  registerWorker(input: $i) { worker { id status devices { id kind name memoryTotalBytes } } instances { remoteInstanceId accepted code } }
}`;
const HEARTBEAT = `mutation($id: ID!, $load: WorkerLoadInput) { workerHeartbeat(id: $id, load: $load) { id status load { inflight requestsTotal cpuSeconds } } }`;
type Answer = Awaited<ReturnType<GqlClient['gql']>>;
const code = (r: Answer) => r.errors?.[0]?.extensions?.code;

describe('worker protocol: a newer worker against this gateway', () => {
  let gw: TestGateway;
  let worker: FakeWorker;
  /** The direct JSON path (a plain JSON POST that wants JSON), as the worker's own client sends it. */
  const direct: GqlClient = {
    async gql(query, variables, headers = {}) {
      const r = await fetch(`${gw.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json', ...headers },
        body: JSON.stringify({ query, variables }),
      });
      return r.json() as never;
    },
  };
  const registration = () => ({
    name: 'Skew-1',
    endpoint: worker.url,
    session: worker.session,
    heartbeatIntervalMs: 60_000,
    // fields of a newer release, at every level
    zone: 'eu-west-1b',
    capabilities: { speculativeDecoding: true },
    devices: [{ id: 'gpu:0', kind: 'gpu', name: 'L4', memoryTotalBytes: 24e9, pciBus: '0000:3b:00.0', mig: { profile: '1g.5gb' } }],
    instances: [{ model: 'skew-echo', version: 'v1', remoteInstanceId: 'skew-echo', task: 'GENERATE', quantization: 'int4', draftModel: null }],
  });
  const load = (extra: Record<string, unknown> = {}) => ({
    inflight: 2,
    requestsTotal: 40,
    cpuSeconds: 1.5,
    gpuTemperatureC: 71,
    kvCache: { usedBlocks: 10, totalBlocks: 100 },
    devices: [{ id: 'gpu:0', memoryUsedBytes: 1e9, utilization: 0.5, powerWatts: 70 }],
    instances: [{ remoteInstanceId: 'skew-echo', memoryBytes: 5e8, device: 'gpu:0', kvCacheBytes: 1e8 }],
    ...extra,
  });

  beforeAll(async () => {
    gw = await startTestGateway({ server: { maxBodyBytes: 64 * 1024 } });
    await prepareWorker(gw, 'Skew-1', [{ id: 'skew-echo' }]);
    worker = await startFakeWorker(gw, {}, 'skew', ['skew-echo']);
    // the worker's server learns its call token (the gateway signs it from name, session and endpoint)
    expect((await worker.register('Skew-1', [{ model: 'skew-echo', remoteInstanceId: 'skew-echo' }])).answer.errors).toBeUndefined();
  });
  afterAll(async () => {
    await worker?.close();
    await gw?.close();
  });

  it('registers with unknown fields at the top and in its device and instance entries; the known ones are kept', async () => {
    for (const client of [gw, direct]) {
      const t = await client.gql<{ workerCallToken: string }>(CALL_TOKEN, {
        i: { name: 'Skew-1', endpoint: worker.url, session: worker.session, protocolVersion: 3 },
      });
      expect(t.errors).toBeUndefined();
      expect(t.data!.workerCallToken).toBe(worker.token());
      const r = await client.gql<{ registerWorker: { worker: { id: string; devices: unknown[] }; instances: Array<{ accepted: boolean }> } }>(REGISTER, {
        i: registration(),
      });
      expect(r.errors).toBeUndefined();
      expect(r.data!.registerWorker.worker).toMatchObject({ id: 'skew-1', devices: [{ id: 'gpu:0', kind: 'gpu', name: 'L4', memoryTotalBytes: 24e9 }] });
      expect(r.data!.registerWorker.instances).toEqual([{ remoteInstanceId: 'skew-echo', accepted: true, code: null }]);
    }
  });

  it('heartbeats with unknown load fields (top, devices, instances) are accepted on every path, the compiled one included', async () => {
    // three runs of the same document on each path: the third runs compiled (graphql-jit)
    for (const client of [gw, direct]) {
      for (let n = 0; n < 3; n++) {
        const r = await client.gql<{ workerHeartbeat: { status: string; load: { inflight: number; requestsTotal: number; cpuSeconds: number } } }>(HEARTBEAT, {
          id: 'skew-1',
          load: load({ inflight: n }),
        });
        expect(r.errors, `run ${n}`).toBeUndefined();
        expect(r.data!.workerHeartbeat).toMatchObject({ status: 'HEALTHY', load: { inflight: n, requestsTotal: 40, cpuSeconds: 1.5 } });
      }
    }
    // the instance registered above serves through the gateway
    await waitFor(
      async () => {
        const r = await gw.gql<{ infer: { text: string } }>(`mutation { infer(model: "skew-echo", input: { prompt: "hi" }, timeoutMs: 5000) { text } }`);
        return r.data?.infer.text === 'skew:hi';
      },
      20_000,
      'an answer from the worker',
    );
  });

  it('known fields with bad values are still refused with a coded error, on both paths', async () => {
    for (const client of [gw, direct]) {
      // wrong types, next to unknown fields
      expect(code(await client.gql(HEARTBEAT, { id: 'skew-1', load: load({ inflight: 'many' }) }))).toBe('MCP_BAD_REQUEST');
      expect(code(await client.gql(HEARTBEAT, { id: 'skew-1', load: load({ devices: [{ id: 'gpu:0', utilization: 'high', fanRpm: 1 }] }) }))).toBe(
        'MCP_BAD_REQUEST',
      );
      expect(code(await client.gql(HEARTBEAT, { id: 'skew-1', load: load({ instances: [{ remoteInstanceId: 'skew-echo', vram: 1 }] }) }))).toBe(
        'MCP_BAD_REQUEST',
      );
      expect(
        code(await client.gql(REGISTER, { i: { ...registration(), devices: [{ id: 'gpu:0', kind: 'gpu', memoryTotalBytes: 'lots', pciBus: 'x' }] } })),
      ).toBe('MCP_BAD_REQUEST');
      // bounds of the known fields (the service's validation)
      const bad = [
        { ...registration(), heartbeatIntervalMs: 10 },
        { ...registration(), devices: [{ id: 'gpu:0', kind: 'fpga', extra: 1 }] },
        { ...registration(), devices: Array.from({ length: 65 }, (_, i) => ({ id: `gpu:${i}`, kind: 'gpu', pciBus: `${i}` })) },
        { ...registration(), instances: [{ model: 'skew-echo', version: 'v1', remoteInstanceId: 'Not Valid', task: 'GENERATE', quantization: 'int4' }] },
      ];
      for (const i of bad) expect(code(await client.gql(REGISTER, { i })), JSON.stringify(i).slice(0, 80)).toBe('MCP_VALIDATION_FAILED');
    }
    // still registered and healthy
    const w = await gw.gql<{ worker: { status: string } }>(`{ worker(id: "skew-1") { status } }`);
    expect(w.data!.worker.status).toBe('HEALTHY');
  });

  it('the body stays bounded: unknown fields do not lift the size limit', async () => {
    const r = await direct.gql(HEARTBEAT, { id: 'skew-1', load: load({ padding: 'x'.repeat(128 * 1024) }) });
    expect(code(r)).toBe('MCP_PAYLOAD_TOO_LARGE');
    const y = await gw.gql(HEARTBEAT, { id: 'skew-1', load: load({ padding: 'x'.repeat(128 * 1024) }) });
    expect(code(y)).toBe('MCP_PAYLOAD_TOO_LARGE');
  });

  it('other input types stay strict: an unknown field in a model registration is refused', async () => {
    const r = await gw.gql(`mutation($i: RegisterModelInput!) { registerModel(input: $i) { id } }`, { i: { id: 'strict-m', task: 'GENERATE', colour: 'red' } });
    expect(code(r)).toBe('MCP_BAD_REQUEST');
    expect(r.errors![0]!.message).toMatch(/colour/);
  });
});
