/**
 * `capibara-mcp worker`: a process that loads backend plugins' models (tfjs by default) and serves
 * them over the worker HTTP protocol (src/workers/http-server.ts) for a gateway. It fetches the
 * gateway's call token for this process (`workerCallToken`: only calls bearing it are served),
 * registers with the gateway over GraphQL (`registerWorker`: the gateway serves only the models
 * an operator assigned to this worker and refuses the others, which are logged and left idle),
 * heartbeats (`workerHeartbeat`; a change of its assigned models makes it register again), receives LOAD /
 * UNLOAD commands through the `workerCommands` subscription (graphql-ws), and re-registers after
 * each change. SIGTERM/SIGINT: deregister, let in-flight requests finish, unload, exit 0.
 */
import { mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { createClient, type Client } from 'graphql-ws';
import type { Logger } from 'pino';
import { createLogger } from '../logging.ts';
import { Registry } from 'prom-client';
import { request } from 'undici';
import WebSocket from 'ws';
import { checkEndpoint, type EndpointSource } from '../security/address-policy.ts';
import { SecretBox } from '../security/secrets.ts';
import { createUpstreamSafety } from '../security/upstream.ts';
import { loadConfig } from '../config/loader.ts';
import { applyNodeTuning } from '../node-tuning.ts';
import type { Config, WorkerModel } from '../config/schema.ts';
import { ERROR_CODES, McpError, toMcpError, type ErrorCode } from '../errors.ts';
import type { WorkerCommandAction } from '../events/bus.ts';
import type { InferenceChunk, InferenceInput } from '../inference/types.ts';
import { DEMO_MODEL_DIR, DEMO_MODEL_ID } from '../models/seed.ts';
import type { BackendCall, DeviceInfo, LoadedInstance } from '../plugin/contract.ts';
import { PluginHost } from '../plugin/host.ts';
import { LocalDevices } from '../resources/local-devices.ts';
import { MemoryAccounting, usageOf } from '../resources/memory-accounting.ts';
import { parseBytes } from '../resources/requirements.ts';
import { newWorkerSession } from './call-auth.ts';
import { createTracing, type Tracing } from '../tracing/tracing.ts';
import { createWorkerHttpServer } from './http-server.ts';

export interface RunWorkerOptions {
  /** Config file (else MCP_CONFIG or capibara.yaml in the working folder). */
  configFile?: string;
  /** Gateway base URL; overrides worker.gateway. */
  gateway?: string;
  /** Port of the worker's HTTP server; overrides worker.port. */
  port?: string | number;
}

export interface StartWorkerOptions {
  config: Config;
  /** Folder relative paths in the config resolve against. */
  baseDir?: string;
  logger?: Logger;
}

/** A running worker. */
export interface RunningWorker {
  /** Worker id on the gateway (lower-case name). */
  id: string;
  name: string;
  /** URL the gateway routes to. */
  endpoint: string;
  /** Instance ids served (the worker's own ids). */
  instances(): string[];
  /** Resolves after the first successful registration. */
  registered: Promise<void>;
  /** Deregisters, drains in-flight requests (up to worker.drainMs), unloads, closes plugins. */
  close(): Promise<void>;
}

interface Served {
  model: string;
  version: string;
  task: string;
  backend: string;
  loaded: LoadedInstance;
}

interface CommandMessage {
  id: string;
  action: WorkerCommandAction;
  instanceId: string;
  model: string;
  version: string;
  source: string | null;
  backend: string | null;
  task: string | null;
  device: string | null;
  options: Record<string, unknown> | null;
}

interface InstanceOutcome {
  remoteInstanceId: string;
  model: string;
  version: string;
  accepted: boolean;
  code: string | null;
  message: string | null;
}

const WORKER_FIELDS = 'id name status';
const CALL_TOKEN = `mutation CallToken($input: WorkerCallTokenInput!) { workerCallToken(input: $input) }`;
const REGISTER = `mutation Register($input: RegisterWorkerInput!) {
  registerWorker(input: $input) { worker { ${WORKER_FIELDS} } instances { remoteInstanceId model version accepted code message } }
}`;
const HEARTBEAT = `mutation Heartbeat($id: ID!, $load: WorkerLoadInput) { workerHeartbeat(id: $id, load: $load) { ${WORKER_FIELDS} assignedModels } }`;
const DEREGISTER = `mutation Deregister($id: ID!) { deregisterWorker(id: $id) { ${WORKER_FIELDS} } }`;
const COMMANDS = `subscription Commands($id: ID!) {
  workerCommands(workerId: $id) { id action instanceId model version source backend task device options }
}`;

/** The worker's default model: the shipped demo capibara-mini on the tfjs backend. */
export function defaultWorkerModels(): WorkerModel[] {
  return [
    {
      id: DEMO_MODEL_ID,
      version: 'v1',
      task: 'generate',
      backend: 'tfjs',
      source: DEMO_MODEL_DIR,
      instanceId: `${DEMO_MODEL_ID}-v1`,
      options: { kind: 'char-lm' },
    },
  ];
}

function defaultName(port: number): string {
  const base = `${hostname()}-${port}`.replace(/[^A-Za-z0-9._-]/g, '-').replace(/^[^A-Za-z0-9]+/, '');
  return (base || `worker-${port}`).slice(0, 63);
}

const remoteIdOf = (m: { id: string; version: string; instanceId?: string | undefined }) =>
  m.instanceId ??
  `${m.id}-${m.version}`
    .toLowerCase()
    .replace(/[^a-z0-9._-]/g, '-')
    .slice(0, 63);

function safely<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch {
    return undefined;
  }
}

/** Counts requests in flight and served, for the heartbeat's load report. */
class LoadCounter {
  inflight = 0;
  total = 0;

  wrap(inst: LoadedInstance): LoadedInstance {
    const self = this;
    const wrapped: LoadedInstance = {
      get runtime() {
        return inst.runtime;
      },
      get device() {
        return inst.device;
      },
      get tasks() {
        return inst.tasks;
      },
      get signature() {
        return inst.signature;
      },
      async infer(input: InferenceInput, call: BackendCall) {
        self.inflight++;
        try {
          return await inst.infer(input, call);
        } finally {
          self.inflight--;
          self.total++;
        }
      },
      health: (signal) => inst.health(signal),
      unload: () => inst.unload(),
    };
    if (inst.memoryBytes) wrapped.memoryBytes = inst.memoryBytes.bind(inst);
    if (inst.deviceInfo) wrapped.deviceInfo = inst.deviceInfo.bind(inst);
    if (inst.stream) {
      const stream = inst.stream.bind(inst);
      wrapped.stream = async function* (input: InferenceInput, call: BackendCall): AsyncGenerator<InferenceChunk> {
        self.inflight++;
        try {
          yield* stream(input, call);
        } finally {
          self.inflight--;
          self.total++;
        }
      };
    }
    return wrapped;
  }
}

class GatewayClient {
  constructor(
    private readonly base: string,
    private readonly headers: Record<string, string>,
  ) {}

  async gql<T>(query: string, variables: Record<string, unknown>, timeoutMs = 10_000): Promise<T> {
    const res = await request(`${this.base}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json', ...this.headers },
      body: JSON.stringify({ query, variables }),
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.body.text();
    let body: { data?: T; errors?: Array<{ message: string; extensions?: { code?: string } }> };
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      throw new McpError('MCP_UPSTREAM_ERROR', `the gateway answered ${res.statusCode} with a non-JSON body`);
    }
    const err = body.errors?.[0];
    if (err) {
      const code = err.extensions?.code;
      const known = typeof code === 'string' && Object.prototype.hasOwnProperty.call(ERROR_CODES, code);
      throw new McpError(known ? (code as ErrorCode) : 'MCP_UPSTREAM_ERROR', err.message);
    }
    if (!body.data) throw new McpError('MCP_UPSTREAM_ERROR', `the gateway answered ${res.statusCode} without data`);
    return body.data;
  }
}

/** Starts a worker: plugins, models, HTTP server, then registration, heartbeats and commands in the background. */
export async function startWorker(opts: StartWorkerOptions): Promise<RunningWorker> {
  const { config } = opts;
  const wc = config.worker;
  const baseDir = opts.baseDir ?? process.cwd();
  const logger = opts.logger ?? createLogger(config.log.level, 'capibara-mcp-worker');
  const dataDir = resolve(baseDir, config.storage.dataDir);
  mkdirSync(dataDir, { recursive: true });
  // A worker stores no secret (LOAD options are resolved and used at once): MCP_SECRET_KEY only, no key file.
  const upstream = createUpstreamSafety(config.security, { box: SecretBox.fromEnv(), baseDir, logger });
  const plugins = await PluginHost.start({
    entries: config.plugins,
    defaultPlugins: config.defaultPlugins,
    baseDir,
    logger,
    dataDir,
    metrics: new Registry(),
    addressPolicy: upstream.policy,
  });
  const abort = new AbortController();
  const served = new Map<string, Served>();
  const counter = new LoadCounter();
  let server: Server | undefined;
  let tracing: Tracing | undefined;
  let ws: Client | undefined;
  /** Random per process: with the endpoint, it selects the gateway's call token for this process. */
  const session = newWorkerSession();
  /** The token the gateway presents on every call (learned before registering); no token, no service. */
  let callToken: string | undefined;

  /**
   * Device memory stated in config (`worker.memory`) replaces what detection found (a share of a host, a test).
   * Such a device reports no used figure: the host-wide one says nothing about this worker's share, and
   * placement then counts what it reserved there. (The worker's own load/unload accounting keeps the raw figures.)
   */
  const withStatedMemory = (list: DeviceInfo[]): DeviceInfo[] => {
    for (const [deviceId, size] of Object.entries(wc.memory)) {
      const bytes = typeof size === 'number' ? size : parseBytes(size);
      if (bytes === undefined) continue;
      const found = list.find((d) => d.id === deviceId);
      if (found) {
        found.memoryTotalBytes = bytes;
        delete found.memoryUsedBytes;
      } else list.push({ id: deviceId, kind: deviceId.replace(/:.*/, '') as DeviceInfo['kind'], name: `${deviceId} (stated)`, memoryTotalBytes: bytes });
    }
    return list;
  };
  const local = LocalDevices.fromConfig(config.resources);
  /** This host's devices (CPU and memory, GPUs, TPUs) with live figures, merged with what the served backends and instances report. */
  const detectedDevices = async (): Promise<DeviceInfo[]> => {
    const extra: DeviceInfo[][] = [];
    for (const b of new Set([...served.values()].map((s) => s.backend))) {
      const list = await Promise.resolve(plugins.get('backend', b).devices?.()).catch(() => undefined);
      if (list) extra.push(list);
    }
    const declared: DeviceInfo[] = [];
    for (const s of served.values()) {
      const d = safely(() => s.loaded.deviceInfo?.());
      if (d) declared.push(d);
    }
    return local.sample([...extra, declared]);
  };
  const liveDevices = async (): Promise<DeviceInfo[]> => withStatedMemory(await detectedDevices());
  /** Memory each served instance's backend holds now (instances whose backend does not say are left out). */
  const instanceMemory = () => {
    const out: Array<{ remoteInstanceId: string; memoryBytes: number; device: string }> = [];
    for (const [remoteInstanceId, s] of served) {
      const bytes = safely(() => s.loaded.memoryBytes?.());
      if (typeof bytes !== 'number' || !Number.isFinite(bytes) || bytes < 0) continue;
      out.push({ remoteInstanceId, memoryBytes: bytes, device: (safely(() => s.loaded.deviceInfo?.()) ?? { id: s.loaded.device }).id });
    }
    return out.slice(0, 256);
  };
  /** Memory used per device now, for the accounting around loads and unloads. */
  const usage = async () => usageOf(await detectedDevices().catch(() => []));
  const accounting = new MemoryAccounting({ logger });

  const loadOne = async (
    m: {
      model: string;
      version: string;
      task: string;
      backend: string;
      source?: string | undefined;
      device?: string | undefined;
      options: Record<string, unknown>;
    },
    remoteId: string,
    /** `api` for LOAD commands: no local file sources, file: secrets only under security.secrets.fileRoots. */
    from: EndpointSource,
  ) => {
    if (!plugins.has('backend', m.backend)) {
      throw new McpError(
        'MCP_UNKNOWN_PLUGIN',
        `no backend plugin named "${m.backend}" on this worker (configured: ${plugins.names('backend').join(', ') || 'none'})`,
      );
    }
    const backend = plugins.get('backend', m.backend);
    const parsed = backend.instanceOptions ? backend.instanceOptions.safeParse(m.options) : { success: true as const, data: m.options };
    if (!parsed.success) throw new McpError('MCP_VALIDATION_FAILED', `options of ${remoteId}: ${parsed.error.message}`);
    if (m.source !== undefined) checkEndpoint(upstream.policy, m.source, from, 'source');
    const declared = backend.secretOptions ?? [];
    const options = await upstream.secrets.resolve(upstream.secrets.seal(parsed.data, declared, from, 'options', 'keep'), declared);
    const source = m.source && !isAbsolute(m.source) && !/^[a-z]+:\/\//i.test(m.source) ? resolve(baseDir, m.source) : m.source;
    const before = await usage();
    const loaded = await backend.load({ id: remoteId, model: m.model, version: m.version, endpoint: source, options, device: m.device }, abort.signal);
    const old = served.get(remoteId);
    served.set(remoteId, { model: m.model, version: m.version, task: m.task, backend: m.backend, loaded: counter.wrap(loaded) });
    const after = await usage();
    // the new one serves before the old one goes (the old one's unload is accounted under its own key)
    if (old) await unloadOne(`${remoteId}#replaced`, old, false);
    accounting.recordLoad(wc.name ?? 'worker', remoteId, before, after);
    logger.info({ instance: remoteId, model: m.model, version: m.version, runtime: loaded.runtime, device: loaded.device }, 'instance loaded');
  };

  try {
    const models = wc.models.length ? wc.models : defaultWorkerModels();
    for (const m of models) {
      const remoteId = remoteIdOf(m);
      try {
        await loadOne(
          { model: m.id, version: m.version, task: m.task, backend: m.backend, source: m.source, device: m.device, options: m.options },
          remoteId,
          'config',
        );
      } catch (err) {
        logger.error({ err, instance: remoteId, model: m.id }, 'instance failed to load; not served');
      }
    }
    // With tracing on, each call the worker serves records its own span (a child of the gateway's attempt).
    tracing = await createTracing(config.tracing, logger);
    server = createWorkerHttpServer({
      instances: { get: (id) => served.get(id)?.loaded },
      callToken: () => callToken,
      logger: logger.child({ component: 'worker-http' }),
      ...(tracing ? { tracing } : {}),
    });
    const srv = server;
    await new Promise<void>((res, rej) => {
      srv.once('error', rej);
      srv.listen(wc.port, wc.host, () => {
        srv.off('error', rej);
        res();
      });
    });
  } catch (err) {
    abort.abort();
    server?.close();
    for (const s of served.values()) await s.loaded.unload().catch(() => {});
    await plugins.close();
    throw err;
  }

  /** Unloads one served instance; what it does not give back is logged (memory accounting). */
  async function unloadOne(remoteId: string, s: Served, stopServing = true): Promise<void> {
    if (stopServing) served.delete(remoteId);
    const before = await usage();
    await s.loaded.unload().catch((err) => logger.warn({ err, instance: remoteId }, 'unload failed'));
    accounting.recordUnload(wc.name ?? 'worker', remoteId, before, await usage());
  }

  const port = (server.address() as AddressInfo).port;
  const host = wc.host === '0.0.0.0' || wc.host === '::' ? '127.0.0.1' : wc.host.includes(':') ? `[${wc.host}]` : wc.host;
  const endpoint = wc.advertiseUrl ?? `http://${host}:${port}`;
  const name = wc.name ?? defaultName(port);
  const id = name.toLowerCase();
  const authHeaders: Record<string, string> = wc.token ? { authorization: `Bearer ${wc.token}` } : {};
  const gateway = new GatewayClient(wc.gateway.replace(/\/+$/, ''), authHeaders);

  const devices = async (): Promise<DeviceInfo[]> =>
    (await liveDevices()).map((d) => ({
      id: d.id,
      kind: d.kind,
      ...(d.name ? { name: d.name.slice(0, 200) } : {}),
      ...(d.memoryTotalBytes !== undefined ? { memoryTotalBytes: d.memoryTotalBytes } : {}),
    }));

  let registeredOnce = false;
  let resolveRegistered!: () => void;
  const registered = new Promise<void>((r) => {
    resolveRegistered = r;
  });
  let needsRegistration = true;
  let lastError = '';

  let refusedBefore = '';
  /** Models of the last registration's answer: served, and refused for not being assigned. */
  let servedModels = new Set<string>();
  let unassignedModels = new Set<string>();
  /** Logs the instances the gateway refused (not assigned to this worker, …) when that list changes; the others are served. */
  const noteRefusals = (outcomes: InstanceOutcome[]) => {
    servedModels = new Set(outcomes.filter((o) => o.accepted).map((o) => o.model));
    unassignedModels = new Set(outcomes.filter((o) => o.code === 'MCP_FORBIDDEN').map((o) => o.model));
    const refused = outcomes.filter((o) => !o.accepted);
    const key = JSON.stringify(refused.map((o) => [o.remoteInstanceId, o.code]));
    if (key === refusedBefore) return;
    refusedBefore = key;
    for (const o of refused) {
      logger.warn(
        { worker: id, instance: o.remoteInstanceId, model: o.model, version: o.version, code: o.code },
        `the gateway refused this instance (${o.message ?? o.code ?? 'refused'}); it stays loaded but gets no traffic`,
      );
    }
  };

  let registeredDeviceIds = new Set<string>();
  const register = async () => {
    const registering = await devices();
    callToken = await gateway.gql<{ workerCallToken: string }>(CALL_TOKEN, { input: { name, endpoint, session } }).then((d) => d.workerCallToken);
    const input = {
      name,
      endpoint,
      session,
      heartbeatIntervalMs: wc.heartbeatIntervalMs,
      devices: registering,
      instances: [...served.entries()].map(([remoteInstanceId, s]) => ({
        model: s.model,
        version: s.version,
        remoteInstanceId,
        task: s.task.toUpperCase(),
        runtime: s.loaded.runtime,
        device: s.loaded.device,
      })),
    };
    const { registerWorker: answer } = await gateway.gql<{ registerWorker: { instances: InstanceOutcome[] } }>(REGISTER, { input }, 60_000);
    needsRegistration = false;
    registeredDeviceIds = new Set(registering.map((d) => d.id));
    noteRefusals(answer.instances);
    const servedCount = answer.instances.filter((o) => o.accepted).length;
    logger.info(
      { gateway: wc.gateway, worker: id, endpoint, instances: servedCount, refused: answer.instances.length - servedCount },
      'registered with the gateway',
    );
    if (!registeredOnce) {
      registeredOnce = true;
      resolveRegistered();
      subscribe();
    }
  };

  // one chain for registration, heartbeats and commands: never two registrations at once
  let chain: Promise<unknown> = Promise.resolve();
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const next = chain.then(fn);
    chain = next.catch(() => {});
    return next;
  };

  let timer: ReturnType<typeof setTimeout> | undefined;
  const tick = async () => {
    try {
      if (needsRegistration) await register();
      else {
        const cpu = process.cpuUsage();
        const live = await liveDevices();
        const load = {
          inflight: counter.inflight,
          requestsTotal: counter.total,
          cpuSeconds: (cpu.user + cpu.system) / 1e6,
          residentMemoryBytes: process.memoryUsage.rss(),
          devices: live.map((d) => ({
            id: d.id,
            ...(d.memoryUsedBytes !== undefined ? { memoryUsedBytes: d.memoryUsedBytes } : {}),
            ...(d.memoryTotalBytes !== undefined ? { memoryTotalBytes: d.memoryTotalBytes } : {}),
            ...(d.utilization !== undefined ? { utilization: d.utilization } : {}),
            ...(d.cores !== undefined ? { cores: d.cores } : {}),
          })),
          instances: instanceMemory(),
        };
        // a device appeared (an instance declared its accelerator, a GPU came back): register again at the next beat
        if (live.some((d) => !registeredDeviceIds.has(d.id))) needsRegistration = true;
        const beat = await gateway.gql<{ workerHeartbeat: { assignedModels: string[] } }>(HEARTBEAT, { id, load }, Math.max(1000, wc.heartbeatIntervalMs * 2));
        // an operator assigned a model refused before, or took one away: register again (at the next beat) to serve what is assigned now
        const assigned = new Set(beat.workerHeartbeat.assignedModels);
        if ([...unassignedModels].some((m) => assigned.has(m)) || [...servedModels].some((m) => !assigned.has(m))) {
          needsRegistration = true;
          logger.info({ worker: id, assigned: [...assigned] }, 'the models assigned to this worker changed: registering again');
        }
      }
      lastError = '';
    } catch (err) {
      const e = toMcpError(err);
      if (e.code === 'MCP_WORKER_NOT_FOUND') {
        needsRegistration = true;
        logger.warn({ worker: id }, 'the gateway does not know this worker: registering again');
        await register().catch((e2: unknown) => logger.warn({ err: e2 }, 'registration failed'));
        return;
      }
      const msg = `${e.code}: ${(err as Error).message}`;
      if (msg !== lastError)
        logger.warn({ err, gateway: wc.gateway }, needsRegistration ? 'cannot register with the gateway; retrying' : 'heartbeat failed; retrying');
      lastError = msg;
    }
  };
  const loop = () => {
    if (abort.signal.aborted) return;
    void serial(tick).finally(() => {
      if (!abort.signal.aborted) timer = setTimeout(loop, wc.heartbeatIntervalMs);
    });
  };

  const onCommand = async (c: CommandMessage) => {
    logger.info({ command: c.id, action: c.action, instance: c.instanceId, model: c.model, version: c.version }, 'command received');
    try {
      if (c.action === 'LOAD') {
        await loadOne(
          {
            model: c.model,
            version: c.version,
            task: (c.task ?? 'generate').toLowerCase(),
            backend: c.backend ?? 'tfjs',
            source: c.source ?? undefined,
            device: c.device ?? undefined,
            options: c.options ?? {},
          },
          c.instanceId,
          'api',
        );
      } else {
        const s = served.get(c.instanceId);
        if (s) await unloadOne(c.instanceId, s);
        logger.info({ instance: c.instanceId }, 'instance unloaded');
      }
    } catch (err) {
      logger.error({ err, command: c.id }, 'command failed');
    }
    await register().catch((err: unknown) => {
      needsRegistration = true;
      logger.warn({ err }, 'registration after a command failed');
    });
  };

  const subscribe = () => {
    const wsUrl = `${wc.gateway.replace(/\/+$/, '').replace(/^http/, 'ws')}/graphql`;
    ws = createClient({
      url: wsUrl,
      webSocketImpl: WebSocket,
      connectionParams: authHeaders,
      lazy: false,
      retryAttempts: Number.MAX_SAFE_INTEGER,
      shouldRetry: () => !abort.signal.aborted,
      retryWait: async (retries) => {
        await new Promise((r) => setTimeout(r, Math.min(5000, 250 * 2 ** Math.min(retries, 5))));
      },
      on: {
        connected: () => logger.debug({ gateway: wsUrl }, 'command subscription connected'),
        closed: () => {
          if (!abort.signal.aborted) logger.debug('command subscription closed; reconnecting');
        },
      },
    });
    const client = ws;
    const start = () => {
      if (abort.signal.aborted) return;
      client.subscribe<{ workerCommands: CommandMessage }>(
        { query: COMMANDS, variables: { id } },
        {
          next: (msg) => {
            if (msg.data?.workerCommands) void serial(() => onCommand(msg.data!.workerCommands));
          },
          error: (err) => {
            logger.warn({ err }, 'command subscription failed; subscribing again');
            if (!abort.signal.aborted) setTimeout(start, 1000).unref();
          },
          complete: () => {
            if (!abort.signal.aborted) setTimeout(start, 1000).unref();
          },
        },
      );
    };
    start();
  };

  loop();
  logger.info({ endpoint, worker: id, instances: [...served.keys()], gateway: wc.gateway }, 'worker serving');

  let closing: Promise<void> | undefined;
  return {
    id,
    name,
    endpoint,
    registered,
    instances: () => [...served.keys()],
    close() {
      closing ??= (async () => {
        abort.abort();
        if (timer) clearTimeout(timer);
        await ws?.dispose();
        if (registeredOnce) {
          await gateway.gql(DEREGISTER, { id }, 3000).catch((err: unknown) => logger.warn({ err }, 'deregistration failed'));
        }
        const srv = server!;
        const closed = new Promise<void>((r) => srv.close(() => r()));
        srv.closeIdleConnections();
        const idleTimer = setInterval(() => srv.closeIdleConnections(), 100);
        const forced = setTimeout(() => srv.closeAllConnections(), wc.drainMs);
        await closed;
        clearInterval(idleTimer);
        clearTimeout(forced);
        for (const s of served.values()) await s.loaded.unload().catch(() => {});
        served.clear();
        await plugins.close();
        await tracing?.shutdown().catch((err: unknown) => logger.warn({ err }, 'tracing shutdown failed'));
        logger.info({ worker: id }, 'worker stopped');
      })();
      return closing;
    },
  };
}

/** The `worker` CLI command: runs until SIGTERM/SIGINT, then shuts down cleanly (exit code 0). */
export async function runWorker(opts: RunWorkerOptions): Promise<number> {
  const overrides: Record<string, unknown> = {};
  if (opts.gateway) overrides['worker.gateway'] = opts.gateway;
  if (opts.port !== undefined && opts.port !== '') {
    const p = Number(opts.port);
    if (!Number.isInteger(p) || p < 0 || p > 65535) throw new McpError('MCP_CONFIG_INVALID', `--port: not a port number: ${String(opts.port)}`);
    overrides['worker.port'] = p;
  }
  const loaded = loadConfig({ file: opts.configFile, overrides });
  applyNodeTuning(loaded.config.node);
  const logger = createLogger(loaded.config.log.level, 'capibara-mcp-worker');
  const worker = await startWorker({ config: loaded.config, baseDir: loaded.baseDir, logger });
  await new Promise<void>((resolveStop) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) {
        logger.warn({ signal }, 'second signal: exiting now');
        process.exit(1);
      }
      stopping = true;
      logger.info({ signal }, 'worker shutting down');
      worker.close().then(resolveStop, (err: unknown) => {
        logger.error({ err }, 'worker shutdown failed');
        resolveStop();
      });
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
  return 0;
}
