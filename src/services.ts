import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { AdminService } from './admin/admin-service.ts';
import type { AdmissionService } from './admission/admission-service.ts';
import type { AlertDeadLetters } from './alerts/dead-letters.ts';
import type { AlertDispatcher } from './alerts/dispatcher.ts';
import type { AlertEngine } from './alerts/engine.ts';
import type { Config } from './config/schema.ts';
import type { Database } from './db/client.ts';
import type { StorageHealth, StorageState } from './db/storage-health.ts';
import type { EventBus } from './events/bus.ts';
import type { InferenceService } from './inference/service.ts';
import type { ResponseCache } from './cache/response-cache.ts';
import type { Fleet } from './models/fleet.ts';
import type { ModelRegistry } from './models/registry.ts';
import type { Accounts } from './auth/accounts.ts';
import type { AuthService } from './auth/auth-service.ts';
import type { AuditLog } from './audit/audit-log.ts';
import type { LimitsService } from './limits/limits-service.ts';
import type { PluginHost } from './plugin/host.ts';
import type { Router } from './routing/router.ts';
import type { TrafficManager } from './traffic/traffic-manager.ts';
import type { GatewayMetrics } from './monitoring/metrics.ts';
import type { MetricsHistory } from './monitoring/history/metrics-history.ts';
import type { LiveMetrics } from './monitoring/history/live.ts';
import type { WorkerRegistry } from './workers/worker-registry.ts';
import type { ResourceInventory } from './resources/inventory.ts';
import type { PlacementReconciler } from './resources/reconciler.ts';
import type { Tracing } from './tracing/tracing.ts';
import type { ScalingController } from './scaling/controller.ts';

/** The domain services, wired once by createGateway and shared by every entry point. */
export interface Services {
  config: Config;
  logger: Logger;
  database: Database;
  plugins: PluginHost;
  events: EventBus;
  registry: ModelRegistry;
  instances: Fleet;
  router: Router;
  /** Traffic splits, canaries, shadow, fallbacks, per-variant stats, inference records and feedback. */
  traffic: TrafficManager;
  inference: InferenceService;
  /** Admission queues per model version (config `admission`); `hold(model, ms)` when capacity is coming (scale from zero). */
  admission: AdmissionService;
  /** The response cache (config `cache`; per model with setModelCache). */
  cache: ResponseCache;
  /** Authentication (the configured strategies), permissions, login/refresh/logout. */
  auth: AuthService;
  /** Rate and token limits (config `limits`): inference admission, `checkRequest` for every request, the failed-auth limit per IP. */
  limits: LimitsService;
  /** Users and API keys created at run time. */
  accounts: Accounts;
  /** The append-only, hash-chained audit log (record() is the AuditRecorder every part calls). */
  audit: AuditLog;
  metrics: GatewayMetrics;
  /** OpenTelemetry spans of inferences (config `tracing`); undefined when tracing is off, and entry points start none. */
  tracing: Tracing | undefined;
  metricsRegistry: Registry;
  /** The metrics history (ring + per-minute rollups): the one MetricSource (GraphQL `metrics`, alert rules). */
  metricsHistory: MetricsHistory;
  /** Shared `metricsUpdates` snapshots: one computation per tick per distinct filter. */
  liveMetrics: LiveMetrics;
  /** Worker processes as stored (the workers table), their load reports, the watchdog and the command channel. */
  workers: WorkerRegistry;
  /** The fleet's devices with live figures, per-instance memory, reserved and free memory (`devices`, `resources`, `resourceUpdates`). */
  resources: ResourceInventory;
  /** Administrative operations (models, instances, workers): what GraphQL mutations and the worker protocol call. */
  admin: AdminService;
  /** Delivers alert notifications to the alert-sink plugins (queued, retried, dead-lettered): `alerts.notify(alert)`. */
  alerts: AlertDispatcher;
  /** Notifications a sink did not take (`alert_dead_letters`): paged reads and redelivery by hand. */
  alertDeadLetters: AlertDeadLetters;
  /** Alert rules, their evaluation (one replica at a time, only with a metric source) and the alerts' state and history. */
  alertEngine: AlertEngine;
  /** Memory-aware placement: resource requirements, the reconciler (one replica at a time), the `placements` query. */
  placement: PlacementReconciler;
  /** Auto-scaling: policies per model version, the decision loop (one replica at a time), the cold-start hold. */
  scaling: ScalingController;
  /** Whether the database answers now; what a request's error becomes at the edge (classify). */
  storage: StorageHealth;
  /**
   * Ready when every required plugin is healthy: inference can be served. An unreachable database
   * makes storage `degraded`, and not ready only with `strict` or server.readiness.requireStorage.
   */
  readiness(opts?: { strict?: boolean }): Promise<{ ready: boolean; storage: StorageState; checks: Record<string, { ok: boolean; detail?: string }> }>;
}
