import { createScaling } from './scaling/create.ts';
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { McpError } from './errors.ts';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { createLogger, flushLogs } from './logging.ts';
import { Registry } from 'prom-client';
import { AdminService } from './admin/admin-service.ts';
import { createAlertDispatcher } from './alerts/create.ts';
import { AlertDeadLetters } from './alerts/dead-letters.ts';
import { AlertEngine } from './alerts/engine.ts';
import type { MetricSource } from './monitoring/metric-source.ts';
import { Accounts } from './auth/accounts.ts';
import { AuditLog } from './audit/audit-log.ts';
import { InferenceAudit } from './audit/inference-audit.ts';
import { AuthService } from './auth/auth-service.ts';
import { ensureFirstAdmin, FIRST_ADMIN } from './auth/bootstrap.ts';
import { GatewayCredentialStore } from './auth/credential-store.ts';
import type { Config } from './config/schema.ts';
import { openDatabase } from './db/client.ts';
import { StorageHealth } from './db/storage-health.ts';
import { createLocalEventBus, type EventBus } from './events/bus.ts';
import { createGraphQLServer } from './graphql/yoga.ts';
import { createGatewayHttpServer, type HttpAdapter } from './http/server.ts';
import { InferenceService } from './inference/service.ts';
import { createResponseCache } from './cache/response-cache.ts';
import { createTracing } from './tracing/tracing.ts';
import { createLimits } from './limits/create.ts';
import { seedModels } from './models/seed.ts';
import { Fleet } from './models/fleet.ts';
import { ModelRegistry } from './models/registry.ts';
import { roleTable } from './auth/permissions.ts';
import { registerFleetMetrics } from './monitoring/fleet-metrics.ts';
import { GatewayMetrics } from './monitoring/metrics.ts';
import { createMetricsHistory } from './monitoring/history/create.ts';
import type { LookupFunction } from './security/address-policy.ts';
import { PluginHost } from './plugin/host.ts';
import { InstanceHealth } from './routing/resilience/instance-health.ts';
import { Router } from './routing/router.ts';
import { AdmissionService } from './admission/admission-service.ts';
import { ReplicaPresence } from './db/replica-presence.ts';
import { logBackgroundFailure } from './db/storage-errors.ts';
import { TrafficManager } from './traffic/traffic-manager.ts';
import type { Services } from './services.ts';
import { WorkerRegistry } from './workers/worker-registry.ts';
import { ResourceInventory } from './resources/inventory.ts';
import { LocalDevices } from './resources/local-devices.ts';
import { registerResourceMetrics } from './resources/metrics.ts';
import { createPlacement } from './resources/reconciler.ts';
import { WorkerRetention } from './workers/worker-retention.ts';
import { checkPluginReferences, checkStartConfig } from './start-check.ts';

export interface GatewayOptions {
  config: Config;
  /** Folder relative paths in the config resolve against. */
  baseDir?: string;
  logger?: Logger;
  /** Extra HTTP APIs (OpenAI, KServe v2 are added by default). */
  adapters?: HttpAdapter[];
  /** The DNS resolver upstream connections use (default `dns.lookup`); the address policy checks what it answers. */
  lookup?: LookupFunction;
  /** Password of the `admin` user created on first start (default: env MCP_ADMIN_PASSWORD, else a generated one). */
  adminPassword?: string;
  /**
   * Shows a generated first-start admin password, once (default: written to stderr, never to the log).
   * Called only when this start created the admin with a generated password.
   */
  announceAdmin?: (info: { username: string; password: string; url: string }) => void;
  /** The metrics alert rules read (default: the gateway's metrics history, when it has one); without one, rules are not evaluated. */
  metricSource?: MetricSource;
}

/** The first-start banner: the generated admin password, on the terminal only. */
function printFirstAdmin({ username, password, url }: { username: string; password: string; url: string }): void {
  process.stderr.write(
    `\n  Capibara MCP: first start. Created user "${username}" with this password (shown only now, stored only as a hash):\n\n` +
      `      ${password}\n\n` +
      `  Sign in:  curl -s ${url}/api/v1/auth/login -H 'content-type: application/json' \\\n` +
      `              -d '{"username":"${username}","password":"<the password>"}'\n` +
      `  then send  Authorization: Bearer <access_token>  on every request.\n\n`,
  );
}

export interface Gateway {
  services: Services;
  /** http://host:port once listening. */
  url: string;
  close(): Promise<void>;
}

/** Wires storage, plugins, services and the HTTP/WebSocket server, and starts listening. */
export async function createGateway(opts: GatewayOptions): Promise<Gateway> {
  const { config } = opts;
  const baseDir = opts.baseDir ?? process.cwd();
  const logger = opts.logger ?? createLogger(config.log.level);
  const started = performance.now();
  const dataDir = resolve(baseDir, config.storage.dataDir);
  const metricsRegistry = new Registry();
  const closers: Array<() => Promise<unknown>> = [];
  const closeAll = async () => {
    for (const fn of closers.reverse()) await fn().catch((err) => logger.warn({ err }, 'error during shutdown'));
    closers.length = 0;
  };
  try {
    // Refused configurations fail here, before storage is opened (`capibara-mcp config check` runs the same).
    const { upstream, secretKey } = await checkStartConfig(config, { baseDir, logger, ...(opts.lookup ? { lookup: opts.lookup } : {}) });
    mkdirSync(dataDir, { recursive: true });
    // A first PGlite start writes its data-dir key file now that the configuration is accepted.
    secretKey.persist();
    if (secretKey.created)
      logger.info(
        { path: secretKey.path },
        'first start: created the secret key file (back it up apart from database dumps: without it the stored secrets cannot be opened)',
      );
    // One secret box seals instance secrets and the access-token signing key alike.
    const credentials = new GatewayCredentialStore(upstream.box);
    // Storage and plugins start side by side (plugins do not use storage; a new PGlite folder is
    // made in a child process, so that overlaps the runtimes' start-up on another core).
    const [db, pluginHost] = await Promise.allSettled([
      openDatabase({
        url: config.storage.url,
        dataDir,
        inMemory: config.storage.inMemory,
        pgliteOptimize: config.storage.pgliteOptimize,
        queryTimeoutMs: config.storage.queryTimeoutMs,
        log: logger,
      }),
      PluginHost.start({
        entries: [...config.plugins, ...config.alerts.sinks],
        defaultPlugins: config.defaultPlugins,
        baseDir,
        logger,
        dataDir,
        metrics: metricsRegistry,
        addressPolicy: upstream.policy,
        authStrategies: config.auth.enabled ? config.auth.strategies : [],
        credentials,
      }),
    ]);
    if (db.status === 'fulfilled') closers.push(() => db.value.close());
    if (pluginHost.status === 'fulfilled') closers.push(() => pluginHost.value.close());
    if (db.status === 'rejected') throw db.reason;
    if (pluginHost.status === 'rejected') throw pluginHost.reason;
    const database = db.value;
    const plugins = pluginHost.value;
    await database.migrate();
    // Again with the plugins that did start: an optional one that failed at setup is missing.
    checkPluginReferences(config, (kind) => plugins.names(kind));
    let events: EventBus = createLocalEventBus();
    if (config.events.redisUrl) {
      const { createRedisEventBus } = await import('./events/redis-bus.ts');
      const shared = await createRedisEventBus(config.events.redisUrl, config.events.channel, logger.child({ component: 'events' }));
      closers.push(() => shared.close());
      events = shared;
    }
    credentials.bind(database.db, events, logger.child({ component: 'auth' }));
    // Closed before storage: it writes the last lastUsedAt updates.
    closers.push(() => credentials.close());
    const registry = new ModelRegistry(database, plugins, events, upstream);
    await registry.load();
    const fleet = new Fleet(registry, plugins, logger.child({ component: 'fleet' }));
    closers.push(() => fleet.close());
    const health = new InstanceHealth(fleet, events, config.router, logger.child({ component: 'health' }));
    closers.push(async () => health.close());
    const router = new Router(
      fleet,
      plugins,
      health,
      {
        defaultBalancer: config.router.balancer,
        maxAttempts: config.router.maxAttempts,
        defaultTimeoutMs: config.router.defaultTimeoutMs,
        hedging: config.router.hedging,
        retryNonIdempotent: config.router.retryNonIdempotent,
      },
      logger.child({ component: 'router' }),
    );
    const traffic = new TrafficManager({ database, registry, fleet, config: config.router, logger: logger.child({ component: 'traffic' }) });
    closers.push(() => traffic.close());
    router.setListener(traffic);
    const admission = new AdmissionService(config.admission, fleet, metricsRegistry);
    router.setAdmission(admission);
    closers.push(async () => admission.close());
    if (database.kind === 'postgres') {
      // Replicas sharing the database share each version's capacity; stopped after the HTTP server
      // (closers run in reverse), so the others take this replica's share once its requests are done.
      const presence = new ReplicaPresence(database.db, {
        beatMs: config.events.presenceMs,
        expiryMs: config.events.presenceExpiryMs,
        events,
        registry: metricsRegistry,
        onError: (err) => logBackgroundFailure(logger, err, { component: 'replica-presence' }, 'replica presence not renewed'),
      });
      presence.onChange((live) => admission.replicasChanged(live.length, presence.rank));
      await presence.start();
      closers.push(() => presence.close());
    }
    const limits = createLimits(config.limits, plugins, logger.child({ component: 'limits' }), metricsRegistry);
    closers.push(() => limits.idle());
    const inference = new InferenceService(router, logger, limits);
    const cache = createResponseCache(config, { registry, fleet, logger: logger.child({ component: 'cache' }), metrics: metricsRegistry });
    closers.push(() => cache.close());
    inference.useCache(cache);
    const tracing = await createTracing(config.tracing, logger.child({ component: 'tracing' }));
    if (tracing) closers.push(() => tracing.shutdown());
    const metrics = new GatewayMetrics(metricsRegistry, {
      knownModel: (id) => fleet.view(id) !== undefined,
      roles: new Set(roleTable(config.auth.roles).keys()),
    });
    traffic.onFeedback((model, version, score) => metrics.onFeedback(model, version, score));
    const audit = new AuditLog(database, config.audit, logger.child({ component: 'audit' }), metricsRegistry, traffic.recorder);
    closers.push(() => audit.close());
    inference.observe(metrics);
    inference.observe(traffic);
    // After the traffic manager: a request's audit row is buffered behind its `inferences` row (same write, in order).
    inference.observe(new InferenceAudit(config.audit.inference, audit.inferenceAudit));
    const workers = new WorkerRegistry(database, registry, fleet, plugins, events, logger.child({ component: 'workers' }));
    closers.push(() => workers.close());
    registerFleetMetrics(metricsRegistry, { fleet, health, workers });
    const resources = new ResourceInventory(
      { workers, fleet, plugins, local: LocalDevices.fromConfig(config.resources), logger: logger.child({ component: 'resources' }) },
      config.resources,
    );
    closers.push(() => resources.close());
    registerResourceMetrics(metricsRegistry, resources);
    const { history: metricsHistory, live: liveMetrics } = createMetricsHistory(config.monitoring.history, {
      metrics,
      fleet,
      workers,
      database,
      registry: metricsRegistry,
      logger: logger.child({ component: 'metrics-history' }),
    });
    closers.push(() => metricsHistory.close());
    const admin = new AdminService(registry, fleet, workers, router, logger.child({ component: 'admin' }));
    const placement = createPlacement({
      config: config.placement,
      db: database.db,
      ...{ registry, fleet, workers, admin, events },
      metrics: metricsRegistry,
      logger: logger.child({ component: 'placement' }),
    });
    resources.setReservations(() => placement.reservations());
    closers.push(() => placement.close());
    const storage = new StorageHealth(() => database.ping(), logger.child({ component: 'storage' }), metricsRegistry, config.storage);
    closers.push(async () => storage.close());
    // Closed before storage and plugins: undelivered notifications are dead-lettered to the database.
    const alerts = createAlertDispatcher(config.alerts, plugins, database, logger.child({ component: 'alerts' }), metricsRegistry);
    closers.push(() => alerts.close());
    // Closed before the dispatcher: its last notifications are handed over first.
    // The metrics history (a MetricSource) becomes the default source once the gateway has one; without
    // a source, rules and alerts are served from the database but this replica does not evaluate them.
    const alertEngine = new AlertEngine({
      database,
      ...(opts.metricSource || config.monitoring.history.enabled ? { source: opts.metricSource ?? metricsHistory } : {}),
      notifier: alerts,
      evaluation: config.alerts.evaluation,
      rules: config.alerts.rules,
      logger: logger.child({ component: 'alert-rules' }),
      publish: (e) => events.publish('alertEvents', e),
    });
    await alertEngine.start();
    closers.push(() => alertEngine.close());
    if (!opts.metricSource && !config.monitoring.history.enabled && config.alerts.rules.length > 0) {
      logger.warn({ rules: config.alerts.rules.length }, 'alerts.rules are configured but no metric source exists; rules are not evaluated');
    }
    const auth = new AuthService(plugins, config.auth, audit, logger.child({ component: 'auth' }), limits, () => database.db);
    let gatewayUrl = '';
    const scaling = createScaling({
      config: config.scaling,
      database,
      registry,
      fleet,
      router,
      plugins,
      admin,
      placement,
      events,
      gatewayUrl: () => gatewayUrl,
      logger: logger.child({ component: 'scaling' }),
    });
    router.setColdStart(scaling.hold);
    inference.observe(scaling);
    closers.push(() => scaling.close());
    const accounts = new Accounts(database.db, auth, credentials, audit);
    const services: Services = {
      config,
      logger,
      database,
      plugins,
      events,
      registry,
      instances: fleet,
      router,
      traffic,
      inference,
      admission,
      cache,
      metrics,
      tracing,
      metricsRegistry,
      metricsHistory,
      liveMetrics,
      workers,
      resources,
      admin,
      auth,
      accounts,
      limits,
      audit,
      storage,
      alerts,
      alertDeadLetters: new AlertDeadLetters(database, alerts),
      alertEngine,
      placement,
      scaling,
      async readiness(opts = {}) {
        const requireStorage = opts.strict || config.server.readiness.requireStorage;
        const checks: Record<string, { ok: boolean; detail?: string }> = {
          storage: storage.state === 'up' ? { ok: true } : { ok: false, detail: 'degraded: the database cannot be reached; inference goes on' },
        };
        for (const p of await plugins.health()) if (p.required) checks[`plugin:${p.name}`] = { ok: p.ok, ...(p.detail ? { detail: p.detail } : {}) };
        const ready = Object.entries(checks).every(([name, c]) => c.ok || (name === 'storage' && !requireStorage));
        return { ready, storage: storage.state, checks };
      },
    };
    let firstAdmin: { created: boolean; generatedPassword?: string } = { created: false };
    if (auth.enabled && auth.hasSessions) {
      firstAdmin = await ensureFirstAdmin(database.db, opts.adminPassword ?? (process.env.MCP_ADMIN_PASSWORD || undefined));
      if (firstAdmin.created) logger.info({ username: FIRST_ADMIN }, 'first start: created the admin user');
      // Read (or create) the signing key now: a wrong secret key fails the start, not the first login.
      await credentials.signingKey().catch((err: unknown) => {
        if (!secretKey.created || !(err instanceof McpError) || err.code !== 'MCP_CONFIG_INVALID') throw err;
        // The key file was missing and a new one would open nothing stored: take it away so the old one can be put back.
        secretKey.discard();
        throw new McpError(
          'MCP_CONFIG_INVALID',
          `the secret key file ${secretKey.path} was missing, and the database holds an access-token signing key sealed with the key it held: put that file back (or set MCP_SECRET_KEY / MCP_SECRET_KEY_FILE to that key)`,
          { details: { paths: ['storage.dataDir'] } },
        );
      });
    }
    await seedModels(services, baseDir);
    await fleet.start();
    const watch = new AbortController();
    registry.follow({ signal: watch.signal, checkEveryMs: config.events.registryCheckMs, logger: logger.child({ component: 'registry' }) });
    fleet.watch(watch.signal);
    health.watch(watch.signal);
    metrics.watch(events, watch.signal);
    services.cache.watch(events, watch.signal);
    metricsHistory.start();
    workers.startWatchdog();
    resources.start();
    placement.start();
    const retention = new WorkerRetention(config.workers.retentionMs, workers, admin, audit, logger.child({ component: 'workers' }));
    retention.start();
    closers.push(() => retention.close());
    storage.start();
    closers.push(async () => watch.abort());

    const { openAiAdapter } = await import('./http/openai.ts');
    const { kserveAdapter } = await import('./http/kserve.ts');
    const graphql = createGraphQLServer(services);
    const http = createGatewayHttpServer(services, graphql, [openAiAdapter, kserveAdapter, ...(opts.adapters ?? [])]);
    const ws = graphql.attachWebSocket(http.server);
    await new Promise<void>((res, rej) => {
      http.server.once('error', rej);
      http.server.listen(config.server.port, config.server.host, () => res());
    });
    closers.push(() => http.shutdown(config.server.shutdownGraceMs));
    closers.push(() => ws.close());
    const addr = http.server.address() as AddressInfo;
    const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    const url = `http://${host === '0.0.0.0' || host === '[::]' ? '127.0.0.1' : host}:${addr.port}`;
    gatewayUrl = url;
    await scaling.start();
    logger.info({ url, storage: database.kind, startupMs: Math.round(performance.now() - started), plugins: plugins.list().length }, 'gateway ready');
    if (auth.enabled && auth.hasSessions)
      logger.info({ login: `${url}/api/v1/auth/login` }, 'sign in with POST /api/v1/auth/login or the GraphQL login mutation');
    if (firstAdmin.generatedPassword) (opts.announceAdmin ?? printFirstAdmin)({ username: FIRST_ADMIN, password: firstAdmin.generatedPassword, url });
    flushLogs(logger);
    return { services, url, close: closeAll };
  } catch (err) {
    await closeAll();
    throw err;
  }
}
