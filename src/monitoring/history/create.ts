import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Database } from '../../db/client.ts';
import type { Fleet } from '../../models/fleet.ts';
import type { WorkerRegistry } from '../../workers/worker-registry.ts';
import type { GatewayMetrics } from '../metrics.ts';
import type { HistoryConfig } from './config.ts';
import { LiveMetrics } from './live.ts';
import { MetricsHistory } from './metrics-history.ts';
import { RollupStore } from './rollups.ts';
import { Sampler } from './sampler.ts';

/** Wires the metrics history (sampler, ring, rollups) and the live snapshot feeds, with their own metrics. */
export function createMetricsHistory(
  config: HistoryConfig,
  deps: { metrics: GatewayMetrics; fleet: Fleet; workers: WorkerRegistry; database: Database; registry: Registry; logger: Logger },
): { history: MetricsHistory; live: LiveMetrics } {
  const sampler = new Sampler({ metrics: deps.metrics, handles: () => deps.fleet.allHandles(), workerLoads: () => deps.workers.loadReports() });
  const store = config.persist ? new RollupStore(deps.database.db) : undefined;
  const history = new MetricsHistory(config, sampler, store, deps.logger);
  const live = new LiveMetrics(history, config.maxSeriesPerAnswer, (err) =>
    deps.logger.warn({ err }, 'metricsUpdates: writing a snapshot to a subscriber failed'),
  );
  new Counter({
    name: 'mcp_metrics_snapshots_computed_total',
    help: 'metricsUpdates snapshots computed (one per interval per distinct filter, shared by its subscribers).',
    registers: [deps.registry],
    collect() {
      this.reset();
      this.inc(live.computations);
    },
  });
  new Gauge({
    name: 'mcp_metrics_history_series',
    help: 'Series held by the metrics history ring.',
    registers: [deps.registry],
    collect() {
      this.set(history.ring.size);
    },
  });
  new Gauge({
    name: 'mcp_metrics_live_feeds',
    help: 'metricsUpdates feeds open (distinct filter and interval).',
    registers: [deps.registry],
    collect() {
      this.set(live.size);
    },
  });
  return { history, live };
}
