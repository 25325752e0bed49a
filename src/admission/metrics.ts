import { Gauge, type Registry } from 'prom-client';
import { CounterFamily, HistogramFamily } from '../monitoring/families.ts';
import type { QueueSnapshot } from './model-queue.ts';

type Labels = 'model' | 'version';

/** Queue wait buckets, seconds. */
const WAIT_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/**
 * Admission metrics. Tenant labels are bounded: each queue names at most admission.metricsMaxTenants
 * tenants and sums the rest as `other`. Depth, in-flight and capacity are read from the queues at scrape time.
 */
export class AdmissionMetrics {
  readonly decisions: CounterFamily<Labels | 'outcome'>;
  readonly wait: HistogramFamily<Labels | 'tenant'>;

  constructor(registry: Registry, snapshots: () => QueueSnapshot[]) {
    this.decisions = new CounterFamily(
      'mcp_admission_decisions_total',
      'Admission decisions per model version: admitted, queued, full, over_share, displaced, timeout, delayed, unmeetable, cancelled, shutdown.',
      ['model', 'version', 'outcome'],
      registry,
    );
    this.wait = new HistogramFamily(
      'mcp_admission_wait_seconds',
      'Time an admitted request waited for its slot (0 when one was free), per model version and tenant (bounded; the rest is `other`).',
      ['model', 'version', 'tenant'],
      WAIT_BUCKETS,
      registry,
    );
    new Gauge({
      name: 'mcp_admission_queue_depth',
      help: 'Requests waiting in the admission queue, per model version and tenant (bounded; the rest is `other`).',
      labelNames: ['model', 'version', 'tenant'],
      registers: [registry],
      collect() {
        this.reset();
        for (const q of snapshots()) for (const t of q.tenants) this.set({ model: q.model, version: q.version, tenant: t.tenant }, t.queued);
      },
    });
    const perVersion = (name: string, help: string, value: (q: QueueSnapshot) => number | null) =>
      new Gauge({
        name,
        help,
        labelNames: ['model', 'version'],
        registers: [registry],
        collect() {
          this.reset();
          for (const q of snapshots()) {
            const v = value(q);
            if (v !== null) this.set({ model: q.model, version: q.version }, v);
          }
        },
      });
    perVersion('mcp_admission_inflight', 'Requests holding an admission slot, per model version.', (q) => q.inFlight);
    perVersion(
      'mcp_admission_capacity',
      'Requests a model version may run at once across the gateway replicas (ready instances × maxConcurrentPerInstance); absent without a limit.',
      (q) => q.capacity,
    );
    perVersion(
      'mcp_admission_replica_capacity',
      "This gateway replica's share of mcp_admission_capacity: the requests it may run at once; absent without a limit.",
      (q) => q.replicaCapacity,
    );
  }
}
