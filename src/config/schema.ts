import { z } from 'zod';
import { admissionConfigSchema } from '../admission/config.ts';
import { scalingConfigSchema } from '../scaling/config.ts';
import { alertsConfigSchema } from '../alerts/config.ts';
import { auditConfigSchema } from '../audit/config.ts';
import { authConfigSchema } from '../auth/config.ts';
import { TASKS } from '../inference/schema.ts';
import { limitsConfigSchema } from '../limits/config.ts';
import { monitoringConfigSchema } from '../monitoring/history/config.ts';
import { securityConfigSchema } from '../security/config.ts';
import { pluginEntrySchema } from './plugin-entry.ts';

export { pluginEntrySchema };
import { tracingConfigSchema } from '../tracing/config.ts';

const port = z.number().int().min(0).max(65535);

export const instanceSeedSchema = z.strictObject({
  id: z.string().optional(),
  backend: z.string(),
  endpoint: z.string().optional(),
  device: z.string().optional(),
  weight: z.number().positive().default(1),
  options: z.record(z.string(), z.unknown()).default({}),
});

export const modelSeedSchema = z.strictObject({
  id: z.string(),
  name: z.string().optional(),
  description: z.string().optional(),
  task: z.enum(TASKS).default('generate'),
  labels: z.record(z.string(), z.string()).default({}),
  defaultVersion: z.string().optional(),
  versions: z.array(z.strictObject({ version: z.string(), instances: z.array(instanceSeedSchema).default([]) })).default([]),
});

/** A model a worker process serves (`capibara-mcp worker`). */
export const workerModelSchema = z.strictObject({
  /** Model id on the gateway (an operator creates it and assigns it to this worker; a worker never creates models). */
  id: z.string().min(1),
  version: z.string().min(1).default('v1'),
  /** Task of the model, used when the gateway registers it. */
  task: z.enum(TASKS).default('generate'),
  /** Backend plugin on the worker that loads it (tfjs, or any configured backend). */
  backend: z.string().default('tfjs'),
  /** Where the backend finds the model: folder / model.json / URL (relative paths resolve against the config file). */
  source: z.string().optional(),
  /** Requested device (`cpu`, `gpu:0`, …). */
  device: z.string().optional(),
  /** Instance id on the worker; default `<id>-<version>`. */
  instanceId: z
    .string()
    .regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'lower-case letters, digits, ".", "_" or "-"')
    .optional(),
  /** Backend instance options. */
  options: z.record(z.string(), z.unknown()).default({}),
});

export const configSchema = z.strictObject({
  server: z
    .strictObject({
      host: z.string().default('127.0.0.1'),
      port: port.default(8080),
      /** Largest request body accepted, bytes. */
      maxBodyBytes: z
        .number()
        .int()
        .positive()
        .default(4 * 1024 * 1024),
      /** Time given to in-flight requests at shutdown, ms. */
      shutdownGraceMs: z.number().int().min(0).default(10_000),
      /** Serve the GraphiQL playground at /graphql. */
      playground: z.boolean().default(true),
      /** Serve the monitoring dashboard at /dashboard (a login form; its data needs the API's permissions). */
      dashboard: z.boolean().default(true),
      /** Origins allowed to call /graphql from a browser (CORS); none by default (same origin only). */
      corsOrigins: z.array(z.string()).default([]),
      /** Time a client has to send the request headers, ms (slow-header / slowloris sockets are closed after it). */
      headersTimeoutMs: z.number().int().min(100).max(600_000).default(10_000),
      /** Time a client has to send the whole request (headers and body), ms. Answers, SSE streams included, are not bounded by it. */
      requestTimeoutMs: z.number().int().min(100).max(3_600_000).default(60_000),
      /** An idle keep-alive connection (no request in progress) is closed after this, ms. */
      keepAliveTimeoutMs: z.number().int().min(100).max(600_000).default(65_000),
      /** Largest total size of the request line and headers, bytes. */
      maxHeaderBytes: z
        .number()
        .int()
        .min(1024)
        .max(1024 * 1024)
        .default(16 * 1024),
      /** Most request headers read (the rest are dropped, as Node does). */
      maxHeadersCount: z.number().int().min(10).max(2000).default(100),
      /** Most open TCP connections (HTTP and WebSocket) from one IP address; beyond, new connections are closed at once. */
      maxSocketsPerIp: z.number().int().min(1).default(256),
      /**
       * The gateway's own protection: past these bounds a new request is refused at once with 503
       * MCP_OVERLOADED and Retry-After, before its body is read. /healthz, /readyz and /metrics are exempt.
       */
      overload: z
        .strictObject({
          /**
           * Most HTTP requests in flight at once (GraphQL, REST, OpenAI, KServe, dashboard; an SSE stream counts
           * until it ends); 0: no bound. Sized for the embedded CPU model on a small machine (admitted latency ≈
           * maxInflight ÷ throughput); raise it in front of remote model servers with many concurrent calls or long streams.
           */
          maxInflight: z.number().int().min(0).default(64),
          /** Shed new requests for a window when the event loop was delayed more than this in the last one, ms; 0: off. */
          maxEventLoopDelayMs: z.number().int().min(0).default(0),
          /** Window over which the event-loop delay is measured, ms. */
          eventLoopWindowMs: z.number().int().min(50).max(10_000).default(500),
          /** The Retry-After of a refused request, seconds. */
          retryAfterSeconds: z.number().int().min(1).max(3600).default(1),
        })
        .prefault({}),
      /** GraphQL limits, checked on every document (HTTP and WebSocket). */
      graphql: z
        .strictObject({
          /** Most lexical tokens in a document; the parser stops at the first one over. */
          maxTokens: z.number().int().min(100).default(5_000),
          /** Deepest field nesting. */
          maxDepth: z.number().int().min(2).default(12),
          /** Most aliases in an operation. */
          maxAliases: z.number().int().min(0).default(30),
          /** Most directives in an operation. */
          maxDirectives: z.number().int().min(0).default(50),
          /** Highest estimated cost (graphql-armor's cost: objects 2, scalars 1, ×1.5 per level). */
          maxCost: z.number().int().min(100).default(20_000),
          /** Parsed documents kept, counted in bytes of document text (an LRU). */
          cacheMaxBytes: z
            .number()
            .int()
            .min(0)
            .default(4 * 1024 * 1024),
          /** Documents larger than this are parsed every time, never cached, bytes. */
          cacheMaxDocumentBytes: z
            .number()
            .int()
            .min(0)
            .default(64 * 1024),
          /** Queries and mutations that repeat run compiled by graphql-jit (false: graphql-js always). */
          jit: z.boolean().default(true),
          /**
           * Shared subscriptions (`metricsUpdates`) over SSE (a JSON POST with `accept: text/event-stream`)
           * are written straight to the responses, each snapshot's frame serialised once per filter; false
           * serves them through Yoga per subscriber (the path before; kept for comparison in bench/metrics-fanout.ts).
           */
          sseSharedWrites: z.boolean().default(true),
          /**
           * A GET operation (or any request without a JSON body) must carry one of these headers
           * (CSRF prevention: a browser cannot add them to a cross-site request without a preflight).
           */
          csrfHeaders: z.array(z.string().min(1)).min(1).default(['x-graphql-csrf', 'x-graphql-yoga-csrf', 'apollo-require-preflight']),
        })
        .prefault({}),
      /** What /readyz requires. */
      readiness: z
        .strictObject({
          /**
           * Not ready while the database is unreachable (the meaning before storage could be degraded).
           * Off by default: inference goes on without the database, so /readyz stays 200 with storage "degraded";
           * `/readyz?strict` asks for this meaning on one probe.
           */
          requireStorage: z.boolean().default(false),
        })
        .prefault({}),
      /** GraphQL over WebSocket (graphql-ws on /graphql). */
      websocket: z
        .strictObject({
          /** Most WebSocket connections from one IP address. */
          maxSocketsPerIp: z.number().int().min(1).default(32),
          /** Most WebSocket connections of one principal. */
          maxSocketsPerPrincipal: z.number().int().min(1).default(32),
          /** Most subscriptions open on one socket. */
          maxSubscriptionsPerSocket: z.number().int().min(1).default(100),
          /** Most queries and mutations executing at once on one socket; one more is answered with an error. */
          maxOperationsInFlight: z.number().int().min(1).default(8),
          /** Largest message, bytes. */
          maxMessageBytes: z
            .number()
            .int()
            .min(1024)
            .default(1024 * 1024),
          /** Time a client has to send connection_init, ms. */
          connectionInitWaitTimeoutMs: z.number().int().min(100).default(3_000),
          /**
           * Shared subscriptions (`metricsUpdates`) write each snapshot's `next` message with its
           * payload serialised once per filter, within the tick; false sends each through graphql-ws
           * per subscriber (the path before; kept for comparison in bench/metrics-fanout.ts).
           */
          sharedWrites: z.boolean().default(true),
        })
        .prefault({}),
    })
    .prefault({}),
  storage: z
    .strictObject({
      /** postgres://… to use a PostgreSQL server; empty for the embedded PGlite. */
      url: z.string().optional(),
      /** Folder for PGlite data and plugin files. */
      dataDir: z.string().default('.data'),
      /** Keep PGlite in memory (tests, throwaway demos). */
      inMemory: z.boolean().default(false),
      /**
       * Let V8 optimise PGlite's hot PostgreSQL code: queries ~7% faster, ~90 MB more RSS under
       * load. Off by default: the embedded database serves the registry, not the data plane.
       */
      pgliteOptimize: z.boolean().default(false),
      /**
       * PostgreSQL: a statement without an answer after this long fails with MCP_STORAGE_UNAVAILABLE
       * (a network partition would otherwise hold the request for ever), ms; 0 = no bound. Migrations are not bounded.
       */
      queryTimeoutMs: z.number().int().min(0).default(30_000),
      /** Time between storage probes while the database answers, ms (every second while it does not). */
      probeIntervalMs: z.number().int().min(100).default(5_000),
      /** A storage probe without an answer after this long counts as a failure, ms. */
      probeTimeoutMs: z.number().int().min(100).default(2_000),
    })
    .prefault({}),
  /**
   * Response cache (opt-in per model with setModelCache): exact-match answers to deterministic requests
   * (tensor and embedding models; generation with temperature 0 or a fixed seed).
   */
  cache: z
    .strictObject({
      /** memory: an LRU in this process, bounded by maxBytes; redis: shared by every gateway replica (redisUrl). */
      store: z.enum(['memory', 'redis']).default('memory'),
      /** Memory store: the most bytes of cached answers (keys included) kept; least recently used go first. */
      maxBytes: z
        .number()
        .int()
        .min(1024)
        .max(64 * 1024 ** 3)
        .default(64 * 1024 * 1024),
      /** An answer larger than this is not cached (either store), bytes of its JSON. */
      maxEntryBytes: z
        .number()
        .int()
        .min(256)
        .max(64 * 1024 * 1024)
        .default(1024 * 1024),
      /** The longest TTL setModelCache accepts, ms. */
      maxTtlMs: z
        .number()
        .int()
        .min(1000)
        .max(30 * 24 * 3_600_000)
        .default(24 * 3_600_000),
      /**
       * Who shares answers: `model` (every principal allowed to call the model), `tenant` (also the same
       * `tenant` claim), `principal` (only the same principal).
       */
      scope: z.enum(['model', 'tenant', 'principal']).default('model'),
      /** Redis store: redis://… (default: events.redisUrl). */
      redisUrl: z.string().optional(),
      /** Redis store: key prefix, so several deployments can share one Redis. */
      keyPrefix: z.string().min(1).max(100).default('capibara-mcp:cache:'),
      /** Redis store: a command without an answer after this long counts as a miss (the request goes on uncached), ms. */
      redisTimeoutMs: z.number().int().min(10).max(60_000).default(250),
    })
    .prefault({}),
  /** Live events (registry changes, health, worker commands) between gateway replicas. */
  events: z
    .strictObject({
      /** redis://… to share events across replicas; empty for in-process only (one gateway). */
      redisUrl: z.string().optional(),
      /** Channel prefix, so several deployments can share one Redis. */
      channel: z.string().min(1).default('capibara-mcp'),
      /**
       * Each replica serves the model registry from memory, kept current by registry events; every
       * registryCheckMs it also compares the stored registry version with its own and re-reads the
       * registry when behind. Bounds how stale a replica can be when events are lost (Redis down).
       */
      registryCheckMs: z.number().int().min(50).max(600_000).default(2000),
      /**
       * Replica presence (shared PostgreSQL only; src/db/replica-presence.ts): each replica renews its
       * presence row every presenceMs; a replica whose row is not renewed for presenceExpiryMs counts as
       * gone. Admission shares each version's capacity among the live replicas.
       */
      presenceMs: z.number().int().min(50).max(60_000).default(2000),
      presenceExpiryMs: z.number().int().min(150).max(600_000).default(6000),
    })
    .refine((e) => e.presenceExpiryMs >= 2 * e.presenceMs, {
      message: 'events.presenceExpiryMs must be at least twice events.presenceMs (a replica would expire between two beats)',
      path: ['presenceExpiryMs'],
    })
    .prefault({}),
  log: z
    .strictObject({
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
      /** One `request` line per HTTP request (method, path, status, ms, reqId). */
      access: z.boolean().default(true),
    })
    .prefault({}),
  auth: authConfigSchema,
  security: securityConfigSchema,
  limits: limitsConfigSchema,
  /** Admission queues per model version: concurrency per instance, priorities, fair share across tenants, queue timeouts, shedding. */
  admission: admissionConfigSchema,
  /** Metrics history (ring buffer and per-minute rollups) behind GraphQL `metrics` and `metricsUpdates`. */
  monitoring: monitoringConfigSchema,
  audit: auditConfigSchema,
  /** Alert delivery: the sinks notifications go to, retries, backoff and dead letters. */
  alerts: alertsConfigSchema,
  tracing: tracingConfigSchema,
  /** Auto-scaling: the controller loop and the actuators policies may name (README "Auto-scaling"). */
  scaling: scalingConfigSchema,
  /** Load every first-party plugin with default options (those listed in `plugins` get their listed options). */
  defaultPlugins: z.boolean().default(true),
  plugins: z.array(pluginEntrySchema).default([]),
  router: z
    .strictObject({
      /** Configured name of the balancer plugin used when a model names none. */
      balancer: z.string().default('p2c-ewma'),
      /** Attempts per request across instances, the first included. */
      maxAttempts: z.number().int().min(1).max(10).default(3),
      /** Deadline of a request that sets none, ms. */
      defaultTimeoutMs: z.number().int().positive().default(60_000),
      /** Retry budget: retries may add at most this fraction of requests (plus minRetriesPerSecond). */
      retryBudget: z
        .strictObject({
          ratio: z.number().min(0).max(1).default(0.2),
          minRetriesPerSecond: z.number().min(0).default(10),
          windowMs: z.number().int().positive().default(10_000),
          /** Buckets of the sliding window. */
          buckets: z.number().int().min(1).default(10),
        })
        .prefault({}),
      /** Circuit breaker per instance. */
      circuitBreaker: z
        .strictObject({
          consecutiveFailures: z.number().int().min(1).default(5),
          failureRateThreshold: z.number().gt(0).max(1).default(0.5),
          minRequests: z.number().int().min(1).default(20),
          windowMs: z.number().int().positive().default(10_000),
          /** Buckets of the sliding window. */
          windowBuckets: z.number().int().min(1).default(10),
          /** First open period, ms. */
          openMs: z.number().int().positive().default(5_000),
          /** Growth of the open period on each failed trial. */
          backoffMultiplier: z.number().min(1).default(2),
          /** Cap of the open period, ms. */
          maxOpenMs: z.number().int().positive().default(60_000),
          halfOpenMaxProbes: z.number().int().min(1).default(1),
          /** At most halfOpenMaxProbes trial requests per this interval while half-open, ms (default: openMs). */
          halfOpenIntervalMs: z.number().int().positive().optional(),
          /** Successful trials that close the circuit. */
          successThreshold: z.number().int().min(1).default(1),
        })
        .transform((c) => ({ ...c, halfOpenIntervalMs: c.halfOpenIntervalMs ?? c.openMs }))
        .prefault({}),
      /** Passive outlier detection (Envoy-style ejection). */
      outlierDetection: z
        .strictObject({
          consecutiveFailures: z.number().int().min(1).default(5),
          baseEjectionMs: z.number().int().positive().default(30_000),
          maxEjectionMs: z.number().int().positive().default(300_000),
          maxEjectionPercent: z.number().min(0).max(100).default(10),
          /** Failure-rate evaluation interval, ms (Envoy `interval`). */
          intervalMs: z.number().int().positive().default(10_000),
          /** Failure rate over an interval that ejects (0 disables). */
          failureRateThreshold: z.number().min(0).max(1).default(0.5),
          /** Requests a host needs in an interval for its failure rate to count. */
          minRequests: z.number().int().min(1).default(10),
        })
        .prefault({}),
      /** Active health probes (the backend's health endpoint, never an inference). */
      healthCheck: z
        .strictObject({
          enabled: z.boolean().default(true),
          intervalMs: z.number().int().positive().default(5_000),
          timeoutMs: z.number().int().positive().default(2_000),
          healthyThreshold: z.number().int().min(1).default(2),
          unhealthyThreshold: z.number().int().min(1).default(3),
          /** ± fraction of the interval added at random to each wait, so probes do not run in lock-step. */
          jitter: z.number().min(0).max(1).default(0.1),
        })
        .prefault({}),
      /**
       * Hedging: when the first attempt has not answered after the pool's latency percentile, send a
       * second one elsewhere (non-streamed requests; takes retry budget).
       */
      hedging: z
        .strictObject({
          enabled: z.boolean().default(false),
          /** Latency percentile (of the model version's recent answers) after which to hedge. */
          percentile: z.number().gt(0).lt(100).default(95),
          /** Never hedge earlier than this, ms (also used until enough latencies are known). */
          minDelayMs: z.number().int().min(0).default(50),
        })
        .prefault({}),
      /** Retry calls to models marked non-idempotent (routing.idempotent = false) after failures where the model may have run. */
      retryNonIdempotent: z.boolean().default(false),
      /** Per-inference records (table `inferences`), written with group commit. */
      recording: z
        .strictObject({
          enabled: z.boolean().default(true),
          /** Flush the buffer after this long, ms. */
          flushIntervalMs: z.number().int().positive().default(200),
          /** Flush as soon as this many rows are buffered (rows per INSERT). */
          maxBatch: z.number().int().min(1).max(5000).default(500),
          /** Records (and their inference audit rows) kept while the database is slow or down; beyond this, new ones are refused (counted), never dropped. */
          maxBuffered: z.number().int().min(1).default(50_000),
          /** Longest stored output text (shadow comparisons), characters. */
          maxOutputChars: z.number().int().min(0).default(4096),
          /** Records older than this are deleted, hours (0 keeps them forever). Feedback can only reach kept records. */
          retentionHours: z.number().min(0).default(168),
          /** How often old records are deleted, ms. */
          pruneIntervalMs: z.number().int().positive().default(600_000),
        })
        .prefault({}),
    })
    .prefault({}),
  /** Register the shipped demo model `capibara-mini` at start when it is not registered yet. */
  demo: z.strictObject({ enabled: z.boolean().default(true) }).prefault({}),
  /** Models registered at start when missing (declarative seed). */
  models: z.array(modelSeedSchema).default([]),
  /** V8 settings `capibara-mcp start` and `worker` apply to their own process (an embedding host keeps its own). */
  node: z
    .strictObject({
      /**
       * How far V8 lets the JS heap grow past the live data before a full GC, in % (V8's
       * --heap-growing-percent; 0 = V8's own factor, up to 300%). Under load most request garbage
       * outlives the young generation, so V8's default lets the heap triple: 60 keeps the gateway
       * ~100 MB smaller for 3–8% more CPU (bench/RESULTS.md). Ignored when node itself got the flag.
       */
      heapGrowingPercent: z.number().int().min(0).max(1000).default(60),
    })
    .prefault({}),
  /** Device inventory (CPU, memory, GPUs, TPUs) of the embedded worker and of every `capibara-mcp worker` (same keys). */
  resources: z
    .strictObject({
      /** How often the gateway samples its own (embedded worker's) devices, ms; workers sample at each heartbeat. */
      sampleIntervalMs: z.number().int().min(100).max(600_000).default(2_000),
      /** `nvidia-smi` binary (name on PATH or a path) for NVIDIA GPUs; false: do not look for GPUs that way. Absent binary: no GPUs. */
      nvidiaSmi: z.union([z.string().min(1).max(1024), z.literal(false)]).default('nvidia-smi'),
      /** Longest one `nvidia-smi` run may take, ms (killed then; that sample has no GPU figures). */
      nvidiaSmiTimeoutMs: z.number().int().min(100).max(60_000).default(3_000),
      /** Folder of device files where TPU chips appear (`accel*`, `vfio/*`). */
      devDir: z.string().min(1).default('/dev'),
      /** Least time between two `resourceUpdates` events, ms (changes in between are merged into the next one). */
      updatesMinIntervalMs: z.number().int().min(50).max(600_000).default(1_000),
    })
    .prefault({}),
  /** The gateway's side of worker processes. */
  workers: z
    .strictObject({
      /**
       * A worker stopped (deregistered) or not heartbeating for longer than this, ms, is removed with
       * its instances and model assignments (as `removeWorker`). Default 7 days; 0 keeps them forever.
       */
      retentionMs: z
        .number()
        .int()
        .min(0)
        .default(7 * 24 * 3_600_000),
    })
    .prefault({}),
  /** `capibara-mcp worker`: a process that serves backend plugins' models for a gateway. */
  worker: z
    .strictObject({
      /** Base URL of the gateway to register with (flag --gateway). */
      gateway: z.string().url().default('http://127.0.0.1:8080'),
      /** Interface the worker's HTTP server binds to. */
      host: z.string().default('127.0.0.1'),
      /** Port of the worker's HTTP server (0: any free port; flag --port). */
      port: port.default(8090),
      /** URL the gateway uses to reach this worker (default http://<host>:<port>, 127.0.0.1 when host is 0.0.0.0). */
      advertiseUrl: z.string().url().optional(),
      /** Worker name, unique per gateway; also its id (default <hostname>-<port>). */
      name: z
        .string()
        .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'letters, digits, ".", "_" or "-"')
        .optional(),
      /** How often the worker heartbeats, ms; the gateway marks it unhealthy after about three missed beats. */
      heartbeatIntervalMs: z.number().int().min(50).max(600_000).default(2_000),
      /** Bearer token sent to the gateway (an API key or JWT with role `worker`); env MCP_WORKER__TOKEN. */
      token: z.string().optional(),
      /** Time given to in-flight requests at shutdown, ms. */
      drainMs: z.number().int().min(0).default(10_000),
      /** Models to serve; empty: the demo model capibara-mini on the tfjs backend. */
      models: z.array(workerModelSchema).default([]),
      /**
       * Device memory this worker states, by device id (`{ cpu: "8GiB", "gpu:0": "24GiB" }`, or bytes): it replaces
       * what the backends detect, and is what placement reserves against (flag --memory cpu=8GiB). A device not
       * detected is added, its kind from the id (cpu, gpu…, tpu…).
       */
      memory: z
        .record(
          z.string().regex(/^(cpu|gpu|tpu)(:[0-9]{1,3})?$/, 'cpu, gpu:N or tpu:N'),
          z.union([z.number().int().min(0), z.string().regex(/^\s*\d+(\.\d+)?\s*(B|KB|MB|GB|KiB|MiB|GiB|TiB)?\s*$/i, 'a size like 8GiB')]),
        )
        .default({}),
    })
    .prefault({}),
  /** Memory-aware placement (src/resources/): the reconciler that keeps versions with resource requirements placed on workers. */
  placement: z
    .strictObject({
      /** Run the reconciler on this replica (it runs on one replica at a time, under a lease). */
      enabled: z.boolean().default(true),
      /** How often it compares the desired placements with the fleet, ms (also at once after a change). */
      intervalMs: z.number().int().min(50).max(600_000).default(2_000),
      /** An instance is idle (evictable) when nothing ran on it for this long, ms. */
      idleMs: z.number().int().min(0).max(86_400_000).default(60_000),
      /** A LOAD sent to a worker counts as reserved this long while the worker has not registered the instance, ms. */
      pendingTimeoutMs: z.number().int().min(1000).max(3_600_000).default(60_000),
    })
    .prefault({}),
});

export type Config = z.infer<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
export type PluginEntry = z.infer<typeof pluginEntrySchema>;
export type WorkerModel = z.infer<typeof workerModelSchema>;

/** JSON Schema of the config file, for editors (`capibara-mcp config schema`). */
export function configJsonSchema(): unknown {
  return z.toJSONSchema(configSchema, { io: 'input' });
}
