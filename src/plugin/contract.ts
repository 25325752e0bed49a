/**
 * THE plugin contract of Capibara MCP. Everything a plugin author needs is declared here
 * and re-exported from the package root (`import { definePlugin } from 'capibara-mcp'`); the
 * building blocks plugins may use come from `capibara-mcp/sdk`, the conformance suites and test
 * kit from `capibara-mcp/testing`. Plugins import nothing else of the gateway.
 *
 * A plugin is an object made by `definePlugin({...})`, exported as the default export of
 * a module (a folder under plugins/, an npm package, or a file path named in the config).
 * The host validates its options with its zod schema, calls `setup` in dependency/config
 * order and closes it in reverse order on shutdown.
 */
import type { ZodType } from 'zod';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { InferenceChunk, InferenceInput, InferenceOutput, Principal, TensorDatatype } from '../inference/types.ts';
import type { AddressPolicy } from '../security/address-policy.ts';

/** The plugin API version this build of the host implements (semver). */
export const PLUGIN_API_VERSION = '1.0.0';

// ───────────────────────────── capabilities ─────────────────────────────

/**
 * The capability kinds and the interface a plugin of each kind returns from `setup`.
 *
 * Built in: `auth`, `balancer` and `backend`, which the gateway calls on every request (first-party
 * plugins under plugins/), `rateLimitStore` (the `limits.store` the rate limits use, plugins/ratelimit-redis), `alertSink`
 * (every configured one receives alert notifications through the gateway's alert dispatcher, plugins/alert-*), and
 * `scaler`, which the scaling controller asks for each model version with a scaling policy (src/scaling). A capability
 * of a built-in kind missing a method the gateway calls (`authenticate`, `pick`, `load`, `send`, `spend`,
 * `desiredInstances`) fails setup.
 *
 * A package adds a kind by augmenting this interface; the host sets its plugins up like any other, lists
 * them in the `plugins` query, and hands them to plugins that name them in `dependsOn` (`ctx.get(kind, name)`,
 * typed by the augmentation). The gateway itself never calls them. A kind is camelCase or kebab-case and
 * must not be a spelling of a built-in one (`Backend`, `balancers`, `alert-sink` are refused).
 *
 * ```ts
 * declare module 'capibara-mcp' {
 *   interface Capabilities { greeter: Greeter }
 * }
 * ```
 */
export interface Capabilities {
  /** Turns request credentials into a principal. */
  auth: AuthStrategy;
  /** Chooses one instance among healthy, ready candidates. */
  balancer: Balancer;
  /** Loads model versions and runs inference on them (tfjs, OpenAI-compatible, KServe v2, …). */
  backend: Backend;
  /** Delivers fired and resolved alerts somewhere (webhook, Slack, Alertmanager, …). */
  alertSink: AlertSink;
  /** Stores rate-limit counters (memory, Redis, …). */
  rateLimitStore: RateLimitStore;
  /** Decides how many instances a model version should have. */
  scaler: Scaler;
}

/** A capability kind: a built-in one or one added by augmenting `Capabilities`. */
export type PluginKind = keyof Capabilities;

/** What the host hands every plugin in `setup`. */
export interface PluginContext {
  /** The plugin's configured name (instance name when one plugin is configured twice). */
  readonly name: string;
  /** A pino logger tagged with the plugin's name; plugins never call `console`. */
  readonly logger: Logger;
  /** Aborts when the gateway shuts down. */
  readonly signal: AbortSignal;
  /** The gateway's data folder (for caches and files); exists. */
  readonly dataDir: string;
  /** The shared Prometheus registry; prefix metric names with `mcp_`. */
  readonly metrics: Registry;
  /**
   * Where upstream connections may go (`security.mode`, `security.upstream`): pass it to every
   * `UpstreamClient` (`new UpstreamClient({ ..., policy: ctx.addressPolicy })`), which checks it on each connection.
   */
  readonly addressPolicy: AddressPolicy;
  /** Another plugin's capability, of any kind (built in or added), by configured name; it must be listed in `dependsOn`. */
  get<K extends PluginKind>(kind: K, name: string): Capabilities[K];
  /** Registers cleanup; close hooks run in reverse registration order at shutdown. */
  onClose(fn: () => unknown | Promise<unknown>): void;
  /** Registers a health check, run by `/readyz` and the `plugins` query; a failing required plugin makes the gateway not ready. */
  onHealth(fn: () => HealthReport | Promise<HealthReport>): void;
  /** The gateway's stored credentials (users, API keys, sessions), for auth plugins. Do not await it in `setup`: storage opens after. */
  readonly credentials: CredentialStore;
}

/** A plugin module's default export. */
export interface PluginDefinition<K extends PluginKind = PluginKind, O = unknown> {
  /** Unique kebab-case name; appears in config, logs and every error about the plugin. */
  name: string;
  /** Which capability the plugin provides. */
  kind: K;
  /** Semver range of the plugin API it was written for, e.g. `^1.0.0`. */
  apiVersion: string;
  /** One-line description, shown by `capibara-mcp plugins`. */
  description?: string;
  /** Options schema; options are validated before `setup`, errors name plugin and option path. */
  options: ZodType<O>;
  /** Names of configured plugins that must be set up before this one. */
  dependsOn?: string[];
  /** Creates the capability. May be async; throwing stops the boot with MCP_PLUGIN_SETUP_FAILED. */
  setup(ctx: PluginContext, options: O): Capabilities[K] | Promise<Capabilities[K]>;
}

/** Identity function that gives a plugin definition its types. */
export function definePlugin<K extends PluginKind, O>(definition: PluginDefinition<K, O>): PluginDefinition<K, O> {
  return definition;
}

// ───────────────────────────── auth ─────────────────────────────

/** The parts of an HTTP request an auth strategy may look at. */
export interface AuthRequest {
  /** Lower-cased header names. */
  headers: Readonly<Record<string, string | undefined>>;
  /** Client address. */
  ip?: string;
  /** Which entry point (graphql, rest, openai, kserve, websocket). */
  entry: string;
}

export interface AuthStrategy {
  /** Returns a principal, `null` when the request carries no credentials this strategy understands; throws McpError(MCP_UNAUTHENTICATED) for bad ones. */
  authenticate(request: AuthRequest): Promise<Principal | null> | Principal | null;
  /**
   * Strategies that sign users in with a name and a password implement these three (the gateway's `login`, `refresh`,
   * `logout` operations call the first strategy that has them; it throttles failed attempts and writes the audit log).
   */
  sessions?: SessionStrategy;
}

/** What a login returns: a short-lived access token and a rotating refresh token. */
export interface TokenSet {
  accessToken: string;
  refreshToken: string;
  /** Seconds the access token is valid. */
  expiresIn: number;
  /** The principal the tokens stand for. */
  principal: Principal;
}

export interface SessionStrategy {
  /** Checks the password; MCP_UNAUTHENTICATED (one message whatever the cause) when wrong, unknown user or disabled. */
  login(username: string, password: string): Promise<TokenSet>;
  /** Spends a refresh token and returns a new pair; reusing a spent token revokes its whole family. */
  refresh(refreshToken: string): Promise<TokenSet>;
  /** Revokes the refresh token's family (idempotent). */
  logout(refreshToken: string): Promise<void>;
}

/** A user as stored (strategy `password`). */
export interface StoredUser {
  id: string;
  username: string;
  /** `scrypt$N$r$p$salt$hash` (see `hashPassword` in capibara-mcp/sdk). */
  passwordHash: string;
  roles: string[];
  /** null: every model. */
  models: string[] | null;
  disabled: boolean;
}

/** An API key created at run time, as stored (only the SHA-256 of the key). */
export interface StoredApiKey {
  id: string;
  name: string;
  roles: string[];
  models: string[] | null;
  worker: string | null;
  expiresAt: Date | null;
  revokedAt: Date | null;
}

/** A credential that stopped being valid, announced to every replica. */
export type CredentialRevocation =
  | { kind: 'apiKey'; id: string }
  /** `at` (epoch ms): credentials the user got before then are void (after it: signed in again). */
  | { kind: 'user'; id: string; at: number }
  | { kind: 'session'; familyId: string };

/**
 * The credential storage the gateway offers auth plugins (users, API keys, refresh-token sessions, the access-token
 * signing key). Revocations reach `onRevoked` listeners on every replica.
 */
export interface CredentialStore {
  userByName(username: string): Promise<StoredUser | undefined>;
  userById(id: string): Promise<StoredUser | undefined>;
  apiKeyByHash(sha256: string): Promise<StoredApiKey | undefined>;
  /** Notes that a key was used; written lazily in batches (`lastUsedAt`). */
  touchApiKey(id: string): void;
  /** The HS256 key access tokens are signed with, shared by every replica (32 bytes). */
  signingKey(): Promise<Uint8Array>;
  /** Stores a new refresh token (its SHA-256 only) in a family; a new family when none is given. */
  createRefreshToken(userId: string, tokenSha256: string, expiresAt: Date, familyId?: string): Promise<{ familyId: string }>;
  /**
   * Spends a refresh token: `ok` with its user and family when it was live; `reused` (after revoking the whole family)
   * when it was already spent; `invalid` when unknown, expired or revoked.
   */
  spendRefreshToken(tokenSha256: string): Promise<{ status: 'ok'; userId: string; familyId: string } | { status: 'reused' | 'invalid' }>;
  /** Revokes the family of a refresh token (logout). */
  revokeRefreshFamily(tokenSha256: string): Promise<void>;
  /** Calls `fn` for every revocation on any replica; returns an unsubscribe function. */
  onRevoked(fn: (revocation: CredentialRevocation) => void): () => void;
}

// ───────────────────────────── balancer ─────────────────────────────

/** One instance the balancer may choose; live fields are kept current by the router. */
export interface BalancerCandidate {
  /** Instance id. */
  readonly id: string;
  /** Relative weight (default 1). */
  readonly weight: number;
  /** Requests the router has sent to it that have not finished. */
  readonly outstanding: number;
}

/** What the balancer knows of the request. */
export interface BalanceContext {
  /** Key for sticky/affinity balancers (header, principal id or prompt prefix); may be absent. */
  affinityKey?: string;
  /** Instances already tried for this request (retries); avoid them when possible. */
  exclude?: ReadonlySet<string>;
}

/** A balancer's choice, with optional per-candidate scores for explainable routing. */
export interface BalancerPick<C extends BalancerCandidate = BalancerCandidate> {
  chosen: C;
  /** Lower is better unless the balancer says otherwise; keyed by candidate id. */
  scores?: Record<string, number>;
}

export interface Balancer {
  /** Picks one of `candidates` (never empty). Must be fast: it runs on every request. */
  pick<C extends BalancerCandidate>(candidates: readonly C[], context: BalanceContext): BalancerPick<C>;
  /** A request to `id` finished; `latencyMs` is time to answer (or to the error). */
  observe?(id: string, outcome: { ok: boolean; latencyMs: number }): void;
  /** The instance left the pool; drop its state. */
  forget?(id: string): void;
}

// ───────────────────────────── backend ─────────────────────────────

/** Where and how an instance runs, as registered. */
export interface InstanceSpec {
  /** Instance id (stable across restarts). */
  id: string;
  model: string;
  version: string;
  /** Backend-specific location: URL of a model server, folder of a tfjs model, … */
  endpoint?: string;
  /** Backend-specific options, validated by the backend (`instanceOptions`). */
  options: Record<string, unknown>;
  /** Requested device (`cpu`, `gpu:0`, …); the backend may report another. */
  device?: string;
}

/** Input signature of a tensor model, used to check requests before they reach the model. */
export interface TensorSignature {
  name: string;
  datatype: TensorDatatype;
  /** -1 for a variable dimension. */
  shape: number[];
}

export interface ModelSignature {
  inputs: TensorSignature[];
  outputs: TensorSignature[];
}

export interface HealthReport {
  ok: boolean;
  /** Why not ok, or extra information. */
  detail?: string;
}

/** Context of one backend call. */
export interface BackendCall {
  /** Request id, for logs and upstream headers. */
  requestId: string;
  /** Aborts on client disconnect, deadline or shutdown. */
  signal: AbortSignal;
  /** Absolute deadline, ms since epoch, when any. */
  deadline?: number;
  /**
   * W3C trace context of this call, present when the gateway traces the request: send it upstream as the `traceparent`
   * (and `tracestate`) header so the model server's spans join the trace. UpstreamClient does it for every request given `call`.
   */
  traceparent?: string;
  tracestate?: string;
}

/** A loaded, servable instance. */
export interface LoadedInstance {
  /** Runtime that executes it (`tfjs-node-gpu`, `tfjs-node`, `tfjs-wasm`, `tfjs-cpu`, `remote`). */
  readonly runtime: string;
  /** Device it actually runs on (`gpu:0`, `cpu`, `remote`). */
  readonly device: string;
  /** What the instance can do. */
  readonly tasks: readonly InferenceInput['task'][];
  /** Tensor signature, when the model has one. */
  readonly signature?: ModelSignature;
  /**
   * Runs one request. `input` has passed the inference input schema (its task's fields present and bounded, tensor data
   * filling its shape): narrow on `input.task` and check it against the model only. Throws McpError: `retryable` when
   * another instance may succeed, `mayHaveExecuted: false` when the request certainly did not run (the router then
   * retries even a non-idempotent model).
   */
  infer(input: InferenceInput, call: BackendCall): Promise<InferenceOutput>;
  /** Streams a generative answer; absent when the backend cannot stream. */
  stream?(input: InferenceInput, call: BackendCall): AsyncIterable<InferenceChunk>;
  /** Cheap health probe (never a billable inference). */
  health(signal: AbortSignal): Promise<HealthReport>;
  /** Releases memory and connections. */
  unload(): Promise<void>;
  /** Bytes of device memory this instance holds now as its backend reports it (tfjs: its weights' bytes); absent when unknown. */
  memoryBytes?(): number | undefined;
  /** The device this instance brings with it, when it is not one of its backend's `devices()` (a remote TPU engine declared by its options). */
  deviceInfo?(): DeviceInfo | undefined;
}

export interface Backend {
  /** Zod schema of `InstanceSpec.options`; validated at registration. */
  readonly instanceOptions?: ZodType<Record<string, unknown>>;
  /**
   * Dotted option paths holding secrets besides the built-in names (apiKey, token, secret, password,
   * authorization, headers.*authorization*, …): stored as `env:`/`file:` references or encrypted, resolved
   * to plaintext only in the options `load` receives, redacted in every API answer.
   */
  readonly secretOptions?: readonly string[];
  /** Loads (or connects to) an instance. */
  load(spec: InstanceSpec, signal: AbortSignal): Promise<LoadedInstance>;
  /** Devices this backend can place instances on (inventory). */
  devices?(): Promise<DeviceInfo[]> | DeviceInfo[];
}

export interface DeviceInfo {
  /** `cpu`, `gpu:0`, `tpu:0`, … */
  id: string;
  kind: 'cpu' | 'gpu' | 'tpu' | 'remote';
  name?: string;
  /** Memory of the device (system memory for `cpu`, HBM/VRAM for accelerators), bytes. */
  memoryTotalBytes?: number;
  /** Memory in use on the device now, bytes (every process, not only this one). */
  memoryUsedBytes?: number;
  /** Busy fraction over the last sampling interval, 0 … 1 (CPU time of all cores; GPU `utilization.gpu` / 100). */
  utilization?: number;
  /** Cores (`cpu`) or chips/cores of an accelerator this entry stands for. */
  cores?: number;
  /** Where the figures come from (`os`, `nvidia-smi`, `tfjs`, `tpu-env`, `declared`). */
  source?: string;
}

// ───────────────────────────── alerts ─────────────────────────────

export interface Alert {
  id: string;
  rule: string;
  severity: 'info' | 'warning' | 'critical';
  state: 'firing' | 'resolved';
  summary: string;
  labels: Record<string, string>;
  value?: number;
  startsAt: Date;
  endsAt?: Date;
}

export interface AlertSink {
  /**
   * Delivers one alert state change (firing, then resolved); resolves once the peer took it. Rejecting
   * makes the gateway retry with backoff, then write a dead-letter record (`alerts.delivery`). Must stop
   * and reject when `signal` aborts (attempt timeout, shutdown). Errors and logs carry no secret.
   * Calls for one sink never overlap. `describeAlertSinkConformance` (capibara-mcp/testing) checks all this.
   */
  send(alert: Alert, signal: AbortSignal): Promise<void>;
}

// ───────────────────────────── rate limits ─────────────────────────────

/**
 * One limit applied to one key, as a GCRA (generic cell rate algorithm, a token bucket kept as one
 * timestamp per key): the key refills one unit every `intervalMs` up to `burst` units.
 * A limit of N units per period P is `intervalMs: P / N`, `burst: N` (or a larger/smaller burst).
 */
export interface RateLimitCharge {
  /** Store key (the store adds its own prefix). */
  key: string;
  /** Units to spend (1 for a request, a token estimate for a generation); in `adjust`, negative refunds. */
  cost: number;
  /** Ms to earn back one unit (period / allowance). */
  intervalMs: number;
  /** Capacity in units: what a full bucket allows at once. */
  burst: number;
}

export interface RateLimitDecision {
  allowed: boolean;
  /** Whole units left after this decision (what a request of cost 1 could still spend now). */
  remaining: number;
  /** When refused: ms until this charge would fit; 0 when allowed. */
  retryAfterMs: number;
  /** Ms until the bucket is full again (nothing spent) after this decision. */
  resetMs: number;
}

/**
 * Shared rate-limit state (memory, Redis, …). Both methods are atomic: concurrent calls from any
 * number of gateway replicas never allow more than the limits allow. A store bounds every call
 * (a short timeout): a call that cannot reach its backing service rejects quickly, and the gateway
 * applies its `limits.failurePolicy`.
 */
export interface RateLimitStore {
  /**
   * Check and spend in one step: when every charge fits, spends them all and every decision is allowed;
   * otherwise spends nothing: the charges that do not fit are refused (those that fit say allowed, as if alone). One decision per charge, in order.
   */
  spend(charges: readonly RateLimitCharge[]): Promise<RateLimitDecision[]>;
  /**
   * Unchecked correction after the fact (token reconciliation): a positive cost charges (and may overdraw,
   * so later requests wait), a negative cost refunds (never below an empty bucket).
   */
  adjust(charges: readonly RateLimitCharge[]): Promise<void>;
}

// ───────────────────────────── scaling ─────────────────────────────

/** One observation of a model version, taken by the scaling controller at each tick. */
export interface ScalingSample {
  /** When it was taken, ms since epoch. */
  at: number;
  /** Instances the actuator was asked for at that time (serving and starting). */
  instances: number;
  /** Instances ready and serving at that time. */
  readyInstances: number;
  /** Requests in flight on the version's instances plus requests waiting for one (held or queued). */
  ongoing: number;
  /** Requests waiting for an instance (held from zero, or in an admission queue). */
  queueDepth: number;
  /** p95 of request latency over the last few seconds, ms (0 when nothing finished). */
  p95LatencyMs: number;
  /** p95 of the time a request waited before an instance took it, ms (0 when nothing waited). */
  queueWaitMs: number;
  /** p95 time to first token of streamed answers, ms (undefined when none streamed). */
  ttftMs?: number;
}

/**
 * What a scaler sees of one model version. The host keeps the history (`samples`, oldest first, over the
 * policy's `historyMs`) so a scaler can be a pure function of its signal: look-back windows and the
 * scaler's own delays are computed over `samples`; the host then applies min/max, its stabilisation
 * windows and cooldown (the same for every scaler), and asks the actuator.
 */
export interface ScalingSignal {
  /** Model id. */
  model: string;
  /** Version name. */
  version: string;
  /** The time of the decision, ms since epoch (the newest sample's `at`). */
  now: number;
  /** Instances the actuator is asked for now (serving and starting). */
  currentInstances: number;
  /** Average in-flight + queued requests per instance over the look-back window (total when at zero). */
  ongoingPerInstance: number;
  /** Requests waiting for an instance now. */
  queueDepth: number;
  /** p95 request latency now, ms. */
  p95LatencyMs: number;
  /** Observations, oldest first; the last one is now. Never empty. */
  samples: readonly ScalingSample[];
  /** Whether the policy allows zero instances (a scaler returning 0 otherwise is raised to the minimum). */
  scaleToZero: boolean;
}

/** A scaler's answer with its reason, for the decision history. */
export interface ScalingRecommendation {
  /** Desired number of instances (a non-negative integer). */
  desired: number;
  /** Short human-readable reason, e.g. "ongoing 12.0 / target 2 per instance". */
  reason: string;
}

export interface Scaler {
  /**
   * Desired number of instances for the version: a pure function of `signal` (same signal, same answer),
   * a non-negative integer, at least 1 while requests are ongoing. The host applies bounds, stabilisation
   * and cooldown. `describeScalerConformance` (capibara-mcp/testing) checks all this.
   */
  desiredInstances(signal: ScalingSignal): number;
  /** Optional: the same decision with its reason; when present the host calls it instead of `desiredInstances`. */
  recommend?(signal: ScalingSignal): ScalingRecommendation;
}
