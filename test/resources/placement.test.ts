/**
 * Memory-aware placement with real worker processes that state their memory (worker.memory):
 * models placed best fit until the workers are full, the next (higher priority) one evicts the least
 * recently used idle instance of lower priority, one that fits nowhere is refused with
 * MCP_INSUFFICIENT_RESOURCES naming what is short, and a worker killed with SIGKILL has its
 * instances placed again on the others.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ModelEvent } from '../../src/events/bus.ts';
import { startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';
import { spawnWorker, waitFor, type WorkerProcess } from '../workers/support.ts';

const MiB = 2 ** 20;

interface Placement {
  instanceId: string;
  modelId: string;
  workerId: string;
  device: string;
  reservedBytes: number;
  status: string;
  pending: boolean;
  lastUsedAt: string;
}

const PLACEMENTS = `{ placements { instanceId modelId workerId device reservedBytes status pending lastUsedAt } }`;

describe('memory-aware placement over worker processes', () => {
  let gw: TestGateway;
  const procs: WorkerProcess[] = [];
  const events: ModelEvent[] = [];
  const listening = new AbortController();

  const placements = async () => {
    const r = await gw.gql<{ placements: Placement[] }>(PLACEMENTS);
    if (r.errors) throw new Error(r.errors[0]!.message);
    return r.data!.placements;
  };
  const readyOn = async (model: string) => (await placements()).find((p) => p.modelId === model && p.status === 'READY' && !p.pending);
  const waitReady = (model: string, worker?: string) =>
    waitFor(
      async () => {
        const p = await readyOn(model);
        return p && (!worker || p.workerId === worker) ? p : undefined;
      },
      30_000,
      `${model} ready${worker ? ` on ${worker}` : ''}`,
      100,
    );
  const register = async (id: string) => {
    const r = await gw.gql(`mutation($i: RegisterModelInput!) { registerModel(input: $i) { id } }`, {
      i: { id, task: 'GENERATE', versions: [{ version: 'v1' }] },
    });
    expect(r.errors).toBeUndefined();
  };
  const setRequirements = (model: string, requirements: Record<string, unknown>) =>
    gw.gql<{ setResourceRequirements: { requirements: { reservedBytes: number; priority: number } } }>(
      `mutation($m: ID!, $r: ResourceRequirementsInput!) { setResourceRequirements(model: $m, version: "v1", requirements: $r) { requirements { reservedBytes priority } } }`,
      { m: model, r: { backend: 'echo', replicas: 1, ...requirements } },
    );
  const infer = async (model: string) => {
    const r = await gw.gql<{ infer: { text: string } }>(`mutation($m: ID!) { infer(model: $m, input: { prompt: "hi" }) { text } }`, { m: model });
    expect(r.errors).toBeUndefined();
    return r.data!.infer.text;
  };
  const worker = (name: string, mib: number) => {
    const w = spawnWorker({
      gateway: gw.url,
      name,
      heartbeatIntervalMs: 1000,
      memory: { cpu: `${mib}MiB` },
      models: [{ id: `${name}-base`, version: 'v1', backend: 'echo' }],
    });
    procs.push(w);
    return w;
  };
  const healthy = (names: string[]) =>
    waitFor(
      async () => {
        // placements go to workers that heartbeated since registering (the load they report)
        const r = await gw.gql<{ workers: Array<{ id: string; status: string; load: { inflight: number } | null }> }>(
          `{ workers { id status load { inflight } } }`,
        );
        return names.every((n) => r.data?.workers.some((w) => w.id === n && w.status === 'HEALTHY' && w.load));
      },
      30_000,
      `workers ${names.join(', ')} healthy`,
      100,
    );

  beforeAll(async () => {
    gw = await startTestGateway({ placement: { intervalMs: 200, idleMs: 300, pendingTimeoutMs: 5000 } });
    void (async () => {
      for await (const e of gw.services.events.subscribe('modelEvents', listening.signal)) events.push(e);
    })().catch(() => {});
    worker('pw1', 1000);
    worker('pw2', 600);
    await healthy(['pw1', 'pw2']);
  }, 60_000);

  afterAll(async () => {
    listening.abort();
    for (const p of procs) p.kill('SIGKILL');
    await Promise.all(procs.map((p) => p.exited));
    await gw?.close();
  });

  it('places best fit until full, evicts the LRU idle lower-priority instance, refuses what fits nowhere, and re-places a killed worker’s instances', async () => {
    // A (500 MiB) fits both workers: best fit is the tighter pw2 (600), not pw1 (1000). Registered with its requirements.
    const a = await gw.gql(`mutation($i: RegisterModelInput!) { registerModel(input: $i) { id } }`, {
      i: { id: 'pa', task: 'GENERATE', versions: [{ version: 'v1', resources: { backend: 'echo', memoryBytes: 500 * MiB, priority: 10 } }] },
    });
    expect(a.errors).toBeUndefined();
    expect(await waitReady('pa')).toMatchObject({ workerId: 'pw2', device: 'cpu', reservedBytes: 500 * MiB });
    // B (400) and C (300, not evictable) fit pw1 only; the workers are then full (free: pw1 300, pw2 100)
    for (const [id, mib, extra] of [
      ['pb', 400, { priority: 10 }],
      ['pc', 300, { priority: 50, evictable: false }],
    ] as const) {
      await register(id);
      const r = await setRequirements(id, { memoryBytes: mib * MiB, ...extra });
      expect(r.errors).toBeUndefined();
      expect(await waitReady(id)).toMatchObject({ workerId: 'pw1', reservedBytes: mib * MiB });
    }
    expect(await infer('pb')).toBe('pw1:hi');
    await new Promise((r) => setTimeout(r, 100));
    expect(await infer('pa')).toBe('pw2:hi');
    await new Promise((r) => setTimeout(r, 600)); // both idle now (idleMs 300); pb was used least recently

    // D (450, priority 100) fits nowhere: it evicts pb (LRU, idle, priority 10) on pw1; pa stays
    await register('pd');
    const d = await setRequirements('pd', { memoryBytes: 450 * MiB, priority: 100 });
    expect(d.errors).toBeUndefined();
    expect(await waitReady('pd')).toMatchObject({ workerId: 'pw1' });
    const after = await placements();
    expect(after.find((p) => p.modelId === 'pb')).toBeUndefined();
    expect(after.find((p) => p.modelId === 'pa')).toMatchObject({ workerId: 'pw2', status: 'READY' });
    expect(after.find((p) => p.modelId === 'pc')).toMatchObject({ workerId: 'pw1', status: 'READY' });
    const pb = await gw.gql<{ model: { versions: Array<{ instances: Array<{ status: string }> }> } }>(
      `{ model(id: "pb") { versions { instances { status } } } }`,
    );
    expect(pb.data!.model.versions[0]!.instances.map((i) => i.status)).toEqual(['UNLOADED']);

    // E (2 GiB) fits nowhere, even evicting everything allowed: refused, nothing stored
    await register('pe');
    const e = await setRequirements('pe', { memoryBytes: 2048 * MiB, priority: 1000 });
    expect(e.errors?.[0]?.extensions?.code).toBe('MCP_INSUFFICIENT_RESOURCES');
    expect(e.errors?.[0]?.message).toMatch(/^pe@v1 needs 2\.0 GiB cpu memory, largest free is [\d.]+ MiB on worker pw[12] \(device cpu\)$/);
    const stored = await gw.gql<{ model: { versions: Array<{ resources: unknown }> } }>(`{ model(id: "pe") { versions { resources { replicas } } } }`);
    expect(stored.data!.model.versions[0]!.resources).toBeNull();

    // a third worker joins: pb (evicted, still wanted) comes back there; then pw2 is killed: pa is placed again on pw3
    worker('pw3', 1000);
    await healthy(['pw3']);
    expect(await waitReady('pb', 'pw3')).toMatchObject({ reservedBytes: 400 * MiB });
    const pw2 = procs[1]!;
    pw2.kill('SIGKILL');
    await pw2.exited;
    expect(await waitReady('pa', 'pw3')).toMatchObject({ reservedBytes: 500 * MiB });
    expect(await waitFor(async () => (await infer('pa').catch(() => '')) === 'pw3:hi', 20_000, 'pa answered from pw3', 100)).toBe(true);
    // never over-committed: what is reserved on each worker stays within its stated memory
    const final = await placements();
    const on = (w: string) => final.filter((p) => p.workerId === w).reduce((s, p) => s + p.reservedBytes, 0);
    expect(on('pw1')).toBeLessThanOrEqual(1000 * MiB);
    expect(on('pw3')).toBeLessThanOrEqual(1000 * MiB);
    expect(final.filter((p) => p.workerId === 'pw2')).toEqual([]);
    // what modelEvents subscribers saw
    const seen = events.map((e) => [e.type, e.modelId, e.workerId ?? null]);
    expect(seen).toContainEqual(['INSTANCE_PLACED', 'pa', 'pw2']);
    expect(seen).toContainEqual(['INSTANCE_PLACED', 'pd', 'pw1']);
    expect(seen).toContainEqual(['INSTANCE_PLACED', 'pa', 'pw3']);
    expect(events.find((e) => e.type === 'INSTANCE_EVICTED' && e.modelId === 'pb')).toMatchObject({ workerId: 'pw1', reason: 'room for pd@v1 (priority 100)' });
    expect(events.find((e) => e.type === 'PLACEMENT_FAILED' && e.modelId === 'pb')?.reason).toMatch(/^pb@v1 needs 400\.0 MiB cpu memory, largest free is/);
  }, 120_000);
});
