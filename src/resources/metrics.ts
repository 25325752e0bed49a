import { Gauge, type Registry } from 'prom-client';
import type { ResourceInventory, ResourceSnapshot } from './inventory.ts';

/**
 * Device and instance memory gauges, read at scrape time from one inventory snapshot. Label values
 * are registry ids: devices a worker registered (at most 64 per worker), instances the Fleet holds,
 * workers the registry holds; per-kind totals have at most four `kind` values.
 */
export function registerResourceMetrics(registry: Registry, inventory: ResourceInventory): void {
  // One snapshot per scrape, shared by the gauges of that scrape.
  let taking: Promise<ResourceSnapshot | undefined> | undefined;
  const snap = () => {
    taking ??= inventory
      .snapshot()
      .catch(() => undefined)
      .finally(() => setImmediate(() => (taking = undefined)));
    return taking;
  };
  const deviceGauge = (name: string, help: string, pick: (d: ResourceSnapshot['workers'][number]['devices'][number]) => number | undefined) =>
    new Gauge({
      name,
      help,
      labelNames: ['worker', 'device', 'kind'],
      registers: [registry],
      async collect() {
        this.reset();
        for (const w of (await snap())?.workers ?? [])
          for (const d of w.devices) {
            const v = pick(d);
            if (v !== undefined) this.set({ worker: w.workerId, device: d.id, kind: d.kind }, v);
          }
      },
    });
  deviceGauge('mcp_device_memory_total_bytes', 'Memory of a device (system memory for cpu, HBM/VRAM for accelerators), bytes.', (d) => d.memoryTotalBytes);
  deviceGauge('mcp_device_memory_used_bytes', 'Memory in use on a device, as last sampled (all processes), bytes.', (d) => d.memoryUsedBytes);
  deviceGauge('mcp_device_memory_reserved_bytes', 'Memory reserved on a device for its instances, bytes.', (d) => d.memoryReservedBytes);
  deviceGauge('mcp_device_memory_free_bytes', 'Memory free on a device: total − max(used, reserved), bytes.', (d) => d.memoryFreeBytes);
  deviceGauge('mcp_device_utilization_ratio', 'Busy fraction of a device over its last sampling interval (0 … 1).', (d) => d.utilization);
  new Gauge({
    name: 'mcp_instance_memory_bytes',
    help: 'Memory an instance holds on its device, as its backend reports it (tfjs: weight bytes), bytes.',
    labelNames: ['model', 'version', 'instance', 'worker'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const w of (await snap())?.workers ?? [])
        for (const i of w.instances) this.set({ model: i.model, version: i.version, instance: i.instanceId, worker: w.workerId }, i.memoryBytes);
    },
  });
  const totals = (name: string, help: string, pick: (t: ResourceSnapshot['byKind'][number]) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['kind'],
      registers: [registry],
      async collect() {
        this.reset();
        for (const t of (await snap())?.byKind ?? []) this.set({ kind: t.kind! }, pick(t));
      },
    });
  totals('mcp_resources_memory_total_bytes', 'Memory of the devices of healthy workers, by device kind, bytes.', (t) => t.memoryTotalBytes);
  totals('mcp_resources_memory_free_bytes', 'Free memory of the devices of healthy workers, by device kind, bytes.', (t) => t.memoryFreeBytes);
  totals('mcp_resources_memory_reserved_bytes', 'Reserved memory of the devices of healthy workers, by device kind, bytes.', (t) => t.memoryReservedBytes);
}
