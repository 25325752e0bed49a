/**
 * The device inventory end to end: the embedded worker (the gateway's own tfjs demo model), a real
 * `capibara-mcp worker` process (tfjs demo model; GPUs from a recorded nvidia-smi CSV replayed by a
 * stand-in binary), a remote TPU engine declared through the openai backend, the resourceUpdates
 * subscription over graphql-ws and SSE, heartbeat bounds, the reservation seam and the gauges.
 */
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { DEMO_MODEL_DIR } from '../../src/models/seed.ts';
import { startFakeOpenAI, type FakeOpenAIServer } from '../../src/testing/fake-openai-server.ts';
import { startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';
import { prepareWorker, spawnWorker, waitFor, type WorkerProcess } from '../workers/support.ts';

const FIX = join(import.meta.dirname, '../fixtures/resources');
const MIB = 1024 * 1024;
/** capibara-mini's weights are float32 in one shard: the bytes tfjs holds for it. */
const DEMO_WEIGHT_BYTES = statSync(join(DEMO_MODEL_DIR, 'weights.bin')).size;
const TPU_BYTES = 8 * 16 * 1024 ** 3;

interface Device {
  key: string;
  id: string;
  kind: string;
  name: string | null;
  cores: number | null;
  memoryTotalBytes: number | null;
  memoryUsedBytes: number | null;
  memoryReservedBytes: number;
  memoryFreeBytes: number | null;
  utilization: number | null;
  source: string | null;
  at: string | null;
}
interface Group {
  workerId: string;
  embedded: boolean;
  remote: boolean;
  status: string;
  at: string | null;
  devices: Device[];
  instances: Array<{ instanceId: string; model: string; device: string | null; memoryBytes: number }>;
}
interface Totals {
  kind: string | null;
  devices: number;
  cores: number;
  memoryTotalBytes: number;
  memoryUsedBytes: number;
  memoryReservedBytes: number;
  memoryFreeBytes: number;
  utilization: number | null;
}
const DEVICE = 'key id kind name cores memoryTotalBytes memoryUsedBytes memoryReservedBytes memoryFreeBytes utilization source at';
const GROUP = `workerId embedded remote status at devices { ${DEVICE} } instances { instanceId model device memoryBytes }`;
const TOTALS = 'kind devices cores memoryTotalBytes memoryUsedBytes memoryReservedBytes memoryFreeBytes utilization';
const RESOURCES = `at totals { ${TOTALS} } byKind { ${TOTALS} } workers { ${GROUP} }`;

describe('resource inventory', () => {
  let gw: TestGateway;
  let openai: FakeOpenAIServer;
  let worker: WorkerProcess | undefined;
  const dir = mkdtempSync(join(tmpdir(), 'mcp-resources-'));

  const devices = async (workerId?: string) => {
    const r = await gw.gql<{ devices: Group[] }>(`query($w: ID) { devices(workerId: $w) { ${GROUP} } }`, { w: workerId });
    expect(r.errors, JSON.stringify(r.errors)).toBeUndefined();
    return r.data!.devices;
  };

  beforeAll(async () => {
    openai = await startFakeOpenAI({ models: ['gemma-7b'], tokens: ['ok'] });
    gw = await startTestGateway({
      demo: { enabled: true },
      router: { healthCheck: { enabled: false } },
      resources: { sampleIntervalMs: 250, updatesMinIntervalMs: 200, nvidiaSmi: false },
      models: [
        {
          id: 'jetstream',
          task: 'chat',
          versions: [
            {
              version: 'v1',
              instances: [
                {
                  id: 'jetstream-v5e',
                  backend: 'openai',
                  endpoint: openai.url,
                  options: { model: 'gemma-7b', accelerator: { kind: 'tpu', type: 'v5litepod-8', memoryBytes: TPU_BYTES, chips: 8 } },
                },
              ],
            },
          ],
        },
      ],
    });
  }, 60_000);

  afterAll(async () => {
    worker?.kill('SIGKILL');
    await worker?.exited;
    await gw?.close();
    await openai?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the embedded worker: CPU cores, live utilisation and system memory; the tfjs instance holds its weights’ bytes', async () => {
    const g = await waitFor(
      async () => {
        const [e] = await devices('embedded');
        return e?.devices[0]?.utilization !== null && e?.instances.some((i) => i.model === 'capibara-mini') ? e : undefined;
      },
      30_000,
      'a second CPU sample and the demo instance',
      100,
    );
    expect(g).toMatchObject({ workerId: 'embedded', embedded: true, remote: false, status: 'healthy' });
    const cpu = g.devices.find((d) => d.id === 'cpu')!;
    expect(cpu).toMatchObject({ key: 'embedded/cpu', kind: 'CPU', source: 'os' });
    expect(cpu.cores).toBeGreaterThan(0);
    expect(cpu.utilization).toBeGreaterThanOrEqual(0);
    expect(cpu.utilization).toBeLessThanOrEqual(1);
    expect(cpu.memoryUsedBytes).toBeGreaterThan(0);
    expect(cpu.memoryUsedBytes).toBeLessThanOrEqual(cpu.memoryTotalBytes!);
    const inst = g.instances.find((i) => i.model === 'capibara-mini')!;
    expect(inst).toMatchObject({ device: 'cpu', memoryBytes: DEMO_WEIGHT_BYTES });
    // reserved defaults to what the instances report; free = total − max(used, reserved)
    expect(cpu.memoryReservedBytes).toBe(DEMO_WEIGHT_BYTES);
    expect(cpu.memoryFreeBytes).toBe(cpu.memoryTotalBytes! - Math.max(cpu.memoryUsedBytes!, cpu.memoryReservedBytes));
    // the figures are live: a later sample is a later one
    const again = await waitFor(
      async () => {
        const [e] = await devices('embedded');
        return e && e.at! > g.at! ? e : undefined;
      },
      10_000,
      'a newer sample',
    );
    expect(again.devices[0]!.at! > cpu.at!).toBe(true);
    // An unknown worker id is a coded error, not an empty answer.
    const unknown = await gw.gql(`{ devices(workerId: "no-such-worker") { workerId } }`);
    expect(unknown.errors?.[0]?.extensions?.code).toBe('MCP_WORKER_NOT_FOUND');
  }, 60_000);

  it('a remote TPU engine reached through the openai backend shows as its instance’s TPU, fully held by it', async () => {
    const [remote] = await devices('@remote');
    expect(remote).toMatchObject({ workerId: '@remote', remote: true, embedded: false });
    expect(remote!.devices).toEqual([
      expect.objectContaining({
        id: 'tpu:jetstream-v5e',
        kind: 'TPU',
        cores: 8,
        memoryTotalBytes: TPU_BYTES,
        memoryReservedBytes: TPU_BYTES,
        memoryFreeBytes: 0,
        source: 'declared',
        name: `v5litepod-8 at ${new URL(openai.url).host}`,
      }),
    ]);
    expect(remote!.instances).toEqual([{ instanceId: 'jetstream-v5e', model: 'jetstream', device: 'tpu:jetstream-v5e', memoryBytes: TPU_BYTES }]);
    const r = await gw.gql<{ resources: { byKind: Totals[] } }>(`{ resources { byKind { ${TOTALS} } } }`);
    expect(r.data!.resources.byKind.find((t) => t.kind === 'TPU')).toMatchObject({ devices: 1, cores: 8, memoryTotalBytes: TPU_BYTES, memoryFreeBytes: 0 });
  });

  it('a worker process reports its devices (GPUs from a recorded nvidia-smi CSV) and its instance memory on each heartbeat', async () => {
    const smi = join(dir, 'nvidia-smi');
    writeFileSync(smi, `#!/bin/sh\ncat '${join(FIX, 'nvidia-smi-4gpu.csv')}'\n`);
    chmodSync(smi, 0o755);
    await prepareWorker(gw, 'tfjs-host', [{ id: 'capibara-mini' }]);
    worker = spawnWorker({
      gateway: gw.url,
      name: 'tfjs-host',
      raw: {
        storage: { dataDir: join(dir, 'data') },
        log: { level: 'info' },
        resources: { nvidiaSmi: smi, devDir: join(dir, 'no-dev') },
        worker: { gateway: gw.url, port: 0, name: 'tfjs-host', heartbeatIntervalMs: 300 },
      },
    });
    const first = await waitFor(
      async () => {
        const [w] = await devices('tfjs-host');
        const cpu = w?.devices.find((d) => d.id === 'cpu');
        // reservations follow the placement state, refreshed each round: they may trail the first heartbeat
        return w?.instances.length && cpu?.utilization !== null && cpu?.memoryReservedBytes ? w : undefined;
      },
      45_000,
      'the worker to heartbeat with live figures',
      100,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n${worker!.output().slice(-3000)}`);
    });
    expect(first.devices.map((d) => d.id)).toEqual(['cpu', 'gpu:0', 'gpu:1', 'gpu:2', 'gpu:3']);
    expect(first.devices[1]).toMatchObject({
      key: 'tfjs-host/gpu:0',
      kind: 'GPU',
      name: 'NVIDIA A100-SXM4-40GB (GPU-9b7c3f2e-1a4d-4c8e-b2f6-0d3e5a7c9b11)',
      memoryTotalBytes: 40960 * MIB,
      memoryUsedBytes: 31012 * MIB,
      utilization: 0.87,
      memoryFreeBytes: (40960 - 31012) * MIB,
    });
    const cpu = first.devices[0]!;
    expect(cpu.cores).toBeGreaterThan(0);
    expect(cpu.memoryUsedBytes).toBeGreaterThan(0);
    expect(first.instances).toEqual([{ instanceId: 'tfjs-host.capibara-mini-v1', model: 'capibara-mini', device: 'cpu', memoryBytes: DEMO_WEIGHT_BYTES }]);
    expect(cpu.memoryReservedBytes).toBe(DEMO_WEIGHT_BYTES);
    // each heartbeat brings new figures
    await waitFor(async () => ((await devices('tfjs-host'))[0]!.at! > first.at! ? true : undefined), 10_000, 'a later heartbeat');

    const r = await gw.gql<{ resources: { totals: Totals; byKind: Totals[] } }>(`{ resources { totals { ${TOTALS} } byKind { ${TOTALS} } } }`);
    const gpu = r.data!.resources.byKind.find((t) => t.kind === 'GPU')!;
    expect(gpu).toMatchObject({ devices: 4, memoryTotalBytes: 4 * 40960 * MIB, memoryUsedBytes: (31012 + 4 + 20480 + 39820) * MIB });
    expect(gpu.utilization).toBeCloseTo((0.87 + 0 + 0.42 + 1) / 4, 10);
    expect(r.data!.resources.totals.devices).toBeGreaterThanOrEqual(1 + 5 + 1);

    const text = await (await fetch(`${gw.url}/metrics`)).text();
    expect(text).toContain(`mcp_device_memory_total_bytes{worker="tfjs-host",device="gpu:0",kind="gpu"} ${40960 * MIB}`);
    expect(text).toContain(`mcp_device_memory_used_bytes{worker="tfjs-host",device="gpu:3",kind="gpu"} ${39820 * MIB}`);
    expect(text).toContain('mcp_device_utilization_ratio{worker="tfjs-host",device="gpu:2",kind="gpu"} 0.42');
    expect(text).toContain(
      `mcp_instance_memory_bytes{model="capibara-mini",version="v1",instance="tfjs-host.capibara-mini-v1",worker="tfjs-host"} ${DEMO_WEIGHT_BYTES}`,
    );
    expect(text).toContain(`mcp_resources_memory_total_bytes{kind="tpu"} ${TPU_BYTES}`);
    expect(text).toMatch(/mcp_device_utilization_ratio\{worker="embedded",device="cpu",kind="cpu"\} [0-9.e-]+/);
  }, 90_000);

  it('resourceUpdates: the state at once, then throttled updates as heartbeats arrive, over graphql-ws and SSE', async () => {
    const client = createClient({ url: `${gw.url.replace('http', 'ws')}/graphql`, webSocketImpl: WebSocket, retryAttempts: 0 });
    const got: Array<{ at: string; workers: Group[] }> = [];
    const before = gw.services.resources.computations;
    const stops = Array.from({ length: 5 }, (_, i) =>
      client.subscribe<{ resourceUpdates: { at: string; workers: Group[] } }>(
        { query: `subscription { resourceUpdates { ${RESOURCES} } }` },
        { next: (m) => i === 0 && m.data && got.push(m.data.resourceUpdates), error: () => {}, complete: () => {} },
      ),
    );
    try {
      await waitFor(async () => got.length >= 4 || undefined, 20_000, 'four updates');
      const ats = got.map((u) => Date.parse(u.at));
      for (let i = 2; i < ats.length; i++) expect(ats[i]! - ats[i - 1]!).toBeGreaterThanOrEqual(150); // updatesMinIntervalMs 200, timer slack
      expect(got.at(-1)!.workers.map((w) => w.workerId)).toEqual(expect.arrayContaining(['embedded', '@remote']));
      // five subscribers share one computation per update
      const after = gw.services.resources.computations;
      expect(after - before).toBeLessThanOrEqual(got.length + 1);
    } finally {
      for (const s of stops) s();
      await client.dispose();
    }

    const ac = new AbortController();
    const res = await fetch(`${gw.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({ query: `subscription { resourceUpdates { at totals { devices memoryTotalBytes } } }` }),
      signal: ac.signal,
    });
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    const events: Array<{ at: string; totals: { devices: number } }> = [];
    while (events.length < 2) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let i: number;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const data = buf
          .slice(0, i)
          .split('\n')
          .find((l) => l.startsWith('data:'));
        buf = buf.slice(i + 2);
        if (!data) continue;
        const body = JSON.parse(data.slice(5)) as { data?: { resourceUpdates: (typeof events)[number] } };
        if (body.data) events.push(body.data.resourceUpdates);
      }
    }
    ac.abort();
    expect(events).toHaveLength(2);
    expect(Date.parse(events[1]!.at)).toBeGreaterThan(Date.parse(events[0]!.at));
    expect(events[1]!.totals.devices).toBeGreaterThan(0);
  }, 60_000);

  it('heartbeat figures are bounded: unregistered devices, bad figures and bad instance ids are dropped; reservations come from the seam', async () => {
    const reg = await gw.gql(`mutation { registerWorker(input: {
      name: "gpu-box", endpoint: "http://127.0.0.1:1", session: "a-session-of-20-chars", heartbeatIntervalMs: 60000,
      devices: [{ id: "gpu:0", kind: "gpu", name: "test GPU", memoryTotalBytes: 8000000000 }]
    }) { worker { id } } }`);
    expect(reg.errors).toBeUndefined();
    const load = {
      devices: [
        { id: 'gpu:0', memoryUsedBytes: 2e9, utilization: 7, cores: -1 },
        ...Array.from({ length: 1000 }, (_, i) => ({ id: `made-up-${i}`, memoryUsedBytes: 1, utilization: 0.5 })),
      ],
      instances: [
        { remoteInstanceId: '../../etc', memoryBytes: 5 },
        { remoteInstanceId: 'ok-1', memoryBytes: Number.MAX_VALUE },
      ],
    };
    const hb = await gw.gql(`mutation($l: WorkerLoadInput) { workerHeartbeat(id: "gpu-box", load: $l) { id } }`, { l: load });
    expect(hb.errors).toBeUndefined();
    const [box] = await devices('gpu-box');
    expect(box!.devices).toEqual([
      expect.objectContaining({
        id: 'gpu:0',
        memoryTotalBytes: 8e9,
        memoryUsedBytes: 2e9,
        utilization: null,
        cores: null,
        memoryReservedBytes: 0,
        memoryFreeBytes: 6e9,
      }),
    ]);
    expect(box!.instances).toEqual([]);
    const text = await (await fetch(`${gw.url}/metrics`)).text();
    expect(text).not.toContain('made-up');

    // placement's reservations, when it sets them, replace the instances' figures: free = total − max(used, reserved)
    gw.services.resources.setReservations(() => new Map([['gpu-box/gpu:0', 6.5e9]]));
    try {
      const [after] = await devices('gpu-box');
      expect(after!.devices[0]).toMatchObject({ memoryReservedBytes: 6.5e9, memoryFreeBytes: 1.5e9 });
    } finally {
      gw.services.resources.setReservations(undefined);
    }
  });
});
