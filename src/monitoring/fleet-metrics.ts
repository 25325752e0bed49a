import { Counter, Gauge, type Registry } from 'prom-client';
import type { Fleet } from '../models/fleet.ts';
import type { HealthChange, InstanceHealth } from '../routing/resilience/instance-health.ts';
import type { WorkerRegistry } from '../workers/worker-registry.ts';
import { CounterFamily } from './families.ts';

type InstanceLabels = 'model' | 'version' | 'instance';

/**
 * Metrics of the fleet, the router's health machinery and the workers. Instance, model and
 * worker labels are registry ids (instances and workers the registry holds). Gauges are read at
 * scrape time from the owners' state (instance handles, worker reports): nothing on the request path.
 */
export function registerFleetMetrics(registry: Registry, deps: { fleet: Fleet; health: InstanceHealth; workers: WorkerRegistry }): void {
  const { fleet, health, workers } = deps;
  const breaker = new CounterFamily<InstanceLabels | 'state'>(
    'mcp_breaker_transitions_total',
    'Circuit breaker state changes of an instance, by the state entered (circuit-open, circuit-half-open, healthy when it closes).',
    ['model', 'version', 'instance', 'state'],
    registry,
  );
  const ejections = new CounterFamily<InstanceLabels>(
    'mcp_instance_ejections_total',
    'Outlier ejections of an instance (consecutive failures or a failure rate above its peers).',
    ['model', 'version', 'instance'],
    registry,
  );
  const probes = new CounterFamily<InstanceLabels | 'state'>(
    'mcp_instance_probe_transitions_total',
    'Active health probe verdict changes of an instance (healthy, unhealthy).',
    ['model', 'version', 'instance', 'state'],
    registry,
  );
  health.onChange((c: HealthChange) => {
    const l = { model: c.modelId, version: c.version, instance: c.instanceId };
    if (c.source === 'breaker') breaker.of({ ...l, state: c.state }).inc();
    else if (c.source === 'outlier' && c.state === 'ejected') ejections.of(l).inc();
    else if (c.source === 'probe') probes.of({ ...l, state: c.state }).inc();
  });
  health.onLeave((id) => {
    for (const f of [breaker, ejections, probes]) f.remove((l) => l.instance === id);
  });

  new Gauge({
    name: 'mcp_instance_inflight_requests',
    help: 'Requests outstanding on an instance (sent by this gateway, not answered yet).',
    labelNames: ['model', 'version', 'instance'],
    registers: [registry],
    collect() {
      this.reset();
      for (const h of fleet.allHandles()) this.set({ model: h.modelId, version: h.version, instance: h.id }, h.outstanding);
    },
  });
  new Gauge({
    name: 'mcp_instance_ready',
    help: '1 when an instance is ready and the router may send it requests (not draining, breaker closed, not ejected), else 0.',
    labelNames: ['model', 'version', 'instance'],
    registers: [registry],
    collect() {
      this.reset();
      for (const h of fleet.allHandles()) {
        const up = h.status === 'ready' && !h.draining && h.loaded !== undefined && health.allows(h.id);
        this.set({ model: h.modelId, version: h.version, instance: h.id }, up ? 1 : 0);
      }
    },
  });

  // Workers: one read of the workers table per scrape, shared by the gauges of that scrape.
  let listing: Promise<Awaited<ReturnType<WorkerRegistry['list']>>> | undefined;
  const list = () => {
    listing ??= workers.list().finally(() => setImmediate(() => (listing = undefined)));
    return listing.catch(() => []);
  };
  new Gauge({
    name: 'mcp_worker_up',
    help: '1 while a worker heartbeats (healthy), 0 when its heartbeats lapsed or it deregistered.',
    labelNames: ['worker'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const w of await list()) this.set({ worker: w.id }, w.status === 'healthy' ? 1 : 0);
    },
  });
  new Gauge({
    name: 'mcp_worker_last_heartbeat_timestamp_seconds',
    help: 'When a worker last heartbeat, seconds since the epoch (the embedded worker: now).',
    labelNames: ['worker'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const w of await list()) this.set({ worker: w.id }, w.lastHeartbeatAt.getTime() / 1000);
    },
  });
  new Gauge({
    name: 'mcp_worker_inflight_requests',
    help: 'Requests running on a worker, as its last heartbeat reported.',
    labelNames: ['worker'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const w of await list()) if (w.load) this.set({ worker: w.id }, w.load.inflight);
    },
  });
  new Counter({
    name: 'mcp_worker_requests_total',
    help: 'Requests a worker served since it started, as its last heartbeat reported.',
    labelNames: ['worker'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const w of await list()) if (w.load) this.inc({ worker: w.id }, w.load.requestsTotal);
    },
  });
  new Counter({
    name: 'mcp_worker_cpu_seconds_total',
    help: 'CPU time (user + system) of a worker process since it started, as its last heartbeat reported.',
    labelNames: ['worker'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const w of await list()) if (w.load?.cpuSeconds !== undefined) this.inc({ worker: w.id }, w.load.cpuSeconds);
    },
  });
  new Gauge({
    name: 'mcp_worker_resident_memory_bytes',
    help: 'Resident memory of a worker process, as its last heartbeat reported.',
    labelNames: ['worker'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const w of await list()) if (w.load?.residentMemoryBytes !== undefined) this.set({ worker: w.id }, w.load.residentMemoryBytes);
    },
  });
  new Gauge({
    name: 'mcp_worker_device_memory_used_bytes',
    help: 'Memory in use on a device a worker registered (GPU, TPU, CPU), as its last heartbeat reported.',
    labelNames: ['worker', 'device', 'kind'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const w of await list()) {
        const used = w.load?.deviceMemoryUsedBytes;
        if (used) for (const d of w.devices) if (used.has(d.id)) this.set({ worker: w.id, device: d.id, kind: d.kind }, used.get(d.id)!);
      }
    },
  });
  new Gauge({
    name: 'mcp_worker_device_memory_bytes',
    help: 'Memory of a device a worker registered (GPU, TPU, CPU), bytes.',
    labelNames: ['worker', 'device', 'kind'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const w of await list())
        for (const d of w.devices) if (d.memoryTotalBytes !== undefined) this.set({ worker: w.id, device: d.id, kind: d.kind }, d.memoryTotalBytes);
    },
  });
}
