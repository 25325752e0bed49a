import { sql } from 'drizzle-orm';
import {
  bigint,
  bigserial,
  boolean,
  doublePrecision,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  real,
  serial,
  text,
  timestamp,
  uniqueIndex,
} from 'drizzle-orm/pg-core';

import type { ResourceRequirements } from '../resources/requirements.ts';

const createdAt = () => timestamp('created_at', { withTimezone: true, mode: 'date', precision: 3 }).notNull().defaultNow();
const updatedAt = () => timestamp('updated_at', { withTimezone: true, mode: 'date', precision: 3 }).notNull().defaultNow();

/** Routing settings stored on a model (traffic split, fallbacks, balancer). */
export interface ModelRouting {
  balancer?: string;
  /** Version name → weight; empty means all traffic to the default version. */
  split?: Record<string, number>;
  /** Sticky assignment key: header name, `principal`, or none. */
  sticky?: { by: 'principal' | 'header'; header?: string } | null;
  /** A version that receives a copy of the traffic; its answers are recorded, never returned. */
  shadow?: { version: string; fraction: number } | null;
  /** Models tried in order when every instance of this one fails. */
  fallbacks?: string[];
  /** Automatic canary rollback. */
  autoRollback?: { canary: string; maxErrorRateDelta: number; maxP95Ratio: number; minSamples: number } | null;
  /** The default version before the last promoteVersion (what rollbackVersion restores). */
  previousDefault?: string | null;
  /** false: calls may have side effects; failures after the model may have run are not retried (default true). */
  idempotent?: boolean;
  /** Response cache for this model (setModelCache): deterministic answers kept for ttlMs. */
  cache?: { enabled: boolean; ttlMs: number } | null;
}

export const models = pgTable(
  'models',
  {
    id: text('id').primaryKey(),
    name: text('name').notNull(),
    description: text('description').notNull().default(''),
    task: text('task').notNull(),
    labels: jsonb('labels').$type<Record<string, string>>().notNull().default({}),
    defaultVersion: text('default_version'),
    routing: jsonb('routing').$type<ModelRouting>().notNull().default({}),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [index('models_created_at_id').on(t.createdAt, t.id)],
);

export const modelVersions = pgTable(
  'model_versions',
  {
    id: text('id').primaryKey(),
    modelId: text('model_id')
      .notNull()
      .references(() => models.id, { onDelete: 'cascade' }),
    version: text('version').notNull(),
    description: text('description').notNull().default(''),
    /** What one instance of the version needs and how many the placement reconciler keeps (src/resources/requirements.ts); null: placed by hand. */
    resources: jsonb('resources').$type<ResourceRequirements>(),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex('model_versions_model_version').on(t.modelId, t.version)],
);

export const workers = pgTable('workers', {
  id: text('id').primaryKey(),
  name: text('name').notNull(),
  endpoint: text('endpoint').notNull(),
  devices: jsonb('devices').$type<Array<{ id: string; kind: string; name?: string; memoryTotalBytes?: number }>>().notNull().default([]),
  status: text('status').notNull().default('healthy'),
  heartbeatIntervalMs: integer('heartbeat_interval_ms').notNull().default(5000),
  lastHeartbeatAt: timestamp('last_heartbeat_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
  createdAt: createdAt(),
});

export const instances = pgTable(
  'instances',
  {
    id: text('id').primaryKey(),
    modelId: text('model_id')
      .notNull()
      .references(() => models.id, { onDelete: 'cascade' }),
    versionId: text('version_id')
      .notNull()
      .references(() => modelVersions.id, { onDelete: 'cascade' }),
    backend: text('backend').notNull(),
    endpoint: text('endpoint'),
    device: text('device'),
    options: jsonb('options').$type<Record<string, unknown>>().notNull().default({}),
    weight: real('weight').notNull().default(1),
    /** registered | loading | ready | draining | failed | unloaded */
    status: text('status').notNull().default('registered'),
    statusReason: text('status_reason'),
    runtime: text('runtime'),
    workerId: text('worker_id').references(() => workers.id, { onDelete: 'set null' }),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [index('instances_version').on(t.versionId), index('instances_model').on(t.modelId)],
);

/**
 * The registry's change counter: one row, bumped in the transaction of every write to models,
 * model_versions and instances. Each replica serves registry reads from memory and compares its
 * version with this one now and then, so a change whose event it missed is picked up anyway.
 */
export const registryState = pgTable('registry_state', {
  id: integer('id').primaryKey(),
  version: bigint('version', { mode: 'number' }).notNull(),
});

/** One row per inference (usage, audit, per-variant accuracy through feedback). */
export const inferences = pgTable(
  'inferences',
  {
    id: text('id').primaryKey(),
    modelId: text('model_id').notNull(),
    version: text('version').notNull(),
    instanceId: text('instance_id'),
    variant: text('variant'),
    principalId: text('principal_id'),
    entry: text('entry').notNull(),
    ok: boolean('ok').notNull(),
    errorCode: text('error_code'),
    latencyMs: real('latency_ms').notNull(),
    promptTokens: integer('prompt_tokens').notNull().default(0),
    completionTokens: integer('completion_tokens').notNull().default(0),
    shadow: boolean('shadow').notNull().default(false),
    output: text('output'),
    feedbackScore: real('feedback_score'),
    feedbackLabel: text('feedback_label'),
    createdAt: createdAt(),
  },
  (t) => [index('inferences_model_created').on(t.modelId, t.createdAt), index('inferences_created').on(t.createdAt)],
);

// ───────────────────────────── security ─────────────────────────────

/** People who log in with a password (strategy `password`). Only scrypt hashes are stored. */
export const users = pgTable('users', {
  id: text('id').primaryKey(),
  username: text('username').notNull().unique(),
  passwordHash: text('password_hash').notNull(),
  roles: jsonb('roles').$type<string[]>().notNull().default([]),
  /** Models the user may use; null: every model. */
  models: jsonb('models').$type<string[] | null>(),
  disabled: boolean('disabled').notNull().default(false),
  createdAt: createdAt(),
  updatedAt: updatedAt(),
});

/**
 * Failed sign-ins per user name (`auth.lockout`), shared by every replica: a row is the name's failure
 * count and, once it reached the limit, when it may try again. A success deletes the row.
 */
export const loginLockouts = pgTable('login_lockouts', {
  username: text('username').primaryKey(),
  failures: integer('failures').notNull(),
  lastFailureAt: timestamp('last_failure_at', { withTimezone: true, mode: 'date' }).notNull(),
  lockedUntil: timestamp('locked_until', { withTimezone: true, mode: 'date' }),
});

/** Rotating refresh tokens: one family per login; reusing a spent token revokes its family. */
export const refreshTokens = pgTable(
  'refresh_tokens',
  {
    id: text('id').primaryKey(),
    userId: text('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    familyId: text('family_id').notNull(),
    /** SHA-256 of the token; the token itself is never stored. */
    tokenHash: text('token_hash').notNull().unique(),
    expiresAt: timestamp('expires_at', { withTimezone: true, mode: 'date', precision: 3 }).notNull(),
    usedAt: timestamp('used_at', { withTimezone: true, mode: 'date', precision: 3 }),
    revokedAt: timestamp('revoked_at', { withTimezone: true, mode: 'date', precision: 3 }),
    createdAt: createdAt(),
  },
  (t) => [index('refresh_tokens_family').on(t.familyId), index('refresh_tokens_user').on(t.userId)],
);

/** API keys created at run time (strategy `api-key`); stored as SHA-256 hashes only. */
export const apiKeys = pgTable('api_keys', {
  id: text('id').primaryKey(),
  name: text('name').notNull(),
  /** The first characters of the key, shown in listings to recognise it. */
  prefix: text('prefix').notNull(),
  keyHash: text('key_hash').notNull().unique(),
  roles: jsonb('roles').$type<string[]>().notNull().default([]),
  /** Models the key may use; null: every model. */
  models: jsonb('models').$type<string[] | null>(),
  /** A worker credential names the one worker it may act as. */
  worker: text('worker'),
  expiresAt: timestamp('expires_at', { withTimezone: true, mode: 'date', precision: 3 }),
  lastUsedAt: timestamp('last_used_at', { withTimezone: true, mode: 'date', precision: 3 }),
  revokedAt: timestamp('revoked_at', { withTimezone: true, mode: 'date', precision: 3 }),
  createdBy: text('created_by'),
  createdAt: createdAt(),
});

/** Small shared auth state across replicas (e.g. the access-token signing key, encrypted). */
export const authState = pgTable('auth_state', {
  key: text('key').primaryKey(),
  value: text('value').notNull(),
  createdAt: createdAt(),
});

/** Models an operator assigned to a worker: the only models that worker may serve. */
export const workerModels = pgTable(
  'worker_models',
  {
    worker: text('worker').notNull(),
    modelId: text('model_id')
      .notNull()
      .references(() => models.id, { onDelete: 'cascade' }),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex('worker_models_pk').on(t.worker, t.modelId)],
);

/**
 * Append-only, hash-chained audit log: each row's hash is SHA-256 over the previous row's hash
 * and this row's canonical form. A trigger (migration 0003) refuses UPDATE, DELETE and TRUNCATE.
 */
export const auditLog = pgTable(
  'audit_log',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    at: timestamp('at', { withTimezone: true, mode: 'date', precision: 3 }).notNull(),
    actor: text('actor'),
    actorVia: text('actor_via'),
    action: text('action').notNull(),
    target: text('target'),
    model: text('model'),
    /** ok | denied | failed */
    outcome: text('outcome').notNull(),
    ip: text('ip'),
    requestId: text('request_id'),
    latencyMs: real('latency_ms'),
    details: jsonb('details').$type<Record<string, unknown>>().notNull().default({}),
    prevHash: text('prev_hash').notNull(),
    hash: text('hash').notNull(),
    /**
     * A batch row of inference calls (action `inference`, one per group commit): the calls as a JSON
     * array text, hashed as stored; null on every other row. Entry i has id `id + i`.
     */
    entries: text('entries'),
    /** A batch row's distinct actors, models and outcomes (sorted), so filters find it by index; null otherwise. */
    actors: text('actors').array(),
    models: text('models').array(),
    outcomes: text('outcomes').array(),
  },
  (t) => [
    index('audit_log_at').on(t.at),
    index('audit_log_actor').on(t.actor),
    index('audit_log_action').on(t.action),
    index('audit_log_batch_actors')
      .using('gin', t.actors)
      .where(sql`${t.entries} is not null`),
    index('audit_log_batch_models')
      .using('gin', t.models)
      .where(sql`${t.entries} is not null`),
  ],
);

/**
 * Alert notifications a sink did not take: every attempt failed (`attempts` of them, the last error
 * kept), the sink's queue was full, or the gateway shut down first. Written by the alert dispatcher;
 * the alert is kept as sent (JSON) so it can be delivered by hand or replayed.
 */
export const alertDeadLetters = pgTable(
  'alert_dead_letters',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    /** Configured name of the alert-sink plugin. */
    sink: text('sink').notNull(),
    alertId: text('alert_id').notNull(),
    rule: text('rule').notNull(),
    /** firing | resolved */
    state: text('state').notNull(),
    /** failed | queue_full | shutdown */
    reason: text('reason').notNull(),
    attempts: integer('attempts').notNull(),
    lastError: text('last_error'),
    alert: jsonb('alert').$type<Record<string, unknown>>().notNull(),
    createdAt: createdAt(),
  },
  (t) => [index('alert_dead_letters_created').on(t.createdAt), index('alert_dead_letters_sink').on(t.sink, t.createdAt)],
);

/** Alert rules (config `alerts.rules`, source `config`, and those made over GraphQL, source `api`); `spec` is an AlertRule. */
export const alertRules = pgTable('alert_rules', {
  name: text('name').primaryKey(),
  /** config | api */
  source: text('source').notNull(),
  spec: jsonb('spec').$type<Record<string, unknown>>().notNull(),
  createdAt: createdAt(),
  updatedAt: updatedAt(),
});

/**
 * One alert per rule and label group, with its current state (inactive, pending, firing, resolved).
 * `seq` counts its transitions; `epoch` is the evaluator lease epoch that wrote the last one.
 */
export const alertInstances = pgTable(
  'alert_instances',
  {
    id: text('id').primaryKey(),
    rule: text('rule').notNull(),
    labels: jsonb('labels').$type<Record<string, string>>().notNull(),
    state: text('state').notNull(),
    seq: integer('seq').notNull(),
    value: real('value'),
    /** When the condition started to hold (pending since). */
    activeSince: timestamp('active_since', { withTimezone: true, mode: 'date', precision: 3 }),
    firedAt: timestamp('fired_at', { withTimezone: true, mode: 'date', precision: 3 }),
    resolvedAt: timestamp('resolved_at', { withTimezone: true, mode: 'date', precision: 3 }),
    /** Whether the last firing was notified (a silenced firing is not, nor its resolution). */
    notified: boolean('notified').notNull().default(false),
    silencedUntil: timestamp('silenced_until', { withTimezone: true, mode: 'date', precision: 3 }),
    acknowledgedBy: text('acknowledged_by'),
    acknowledgedAt: timestamp('acknowledged_at', { withTimezone: true, mode: 'date', precision: 3 }),
    epoch: integer('epoch').notNull(),
    updatedAt: updatedAt(),
  },
  (t) => [index('alert_instances_state').on(t.state), index('alert_instances_rule').on(t.rule)],
);

/** Every state change of every alert (the history). */
export const alertTransitions = pgTable(
  'alert_transitions',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    alertId: text('alert_id').notNull(),
    seq: integer('seq').notNull(),
    rule: text('rule').notNull(),
    fromState: text('from_state').notNull(),
    toState: text('to_state').notNull(),
    value: real('value'),
    epoch: integer('epoch').notNull(),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex('alert_transitions_alert_seq').on(t.alertId, t.seq), index('alert_transitions_created').on(t.createdAt)],
);

/** Notifications written with their transition, delivered from here (exactly one row per alert and transition). */
export const alertOutbox = pgTable(
  'alert_outbox',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    alertId: text('alert_id').notNull(),
    seq: integer('seq').notNull(),
    alert: jsonb('alert').$type<Record<string, unknown>>().notNull(),
    deliveredAt: timestamp('delivered_at', { withTimezone: true, mode: 'date', precision: 3 }),
    createdAt: createdAt(),
  },
  (t) => [
    uniqueIndex('alert_outbox_alert_seq').on(t.alertId, t.seq),
    index('alert_outbox_pending')
      .on(t.id)
      .where(sql`${t.deliveredAt} is null`),
  ],
);

/**
 * Leader leases (one row per lease name): who holds it until when; `epoch` grows at every change of holder (fencing token).
 * Also the gateway replicas' presence rows, `gateway-replica:<id>` (src/db/replica-presence.ts: a lease each replica keeps for itself).
 */
export const alertLeases = pgTable('alert_leases', {
  name: text('name').primaryKey(),
  holder: text('holder').notNull(),
  epoch: integer('epoch').notNull(),
  expiresAt: timestamp('expires_at', { withTimezone: true, mode: 'date', precision: 3 }).notNull(),
});

/**
 * Per-minute rollups of the metrics history (GraphQL `metrics` beyond the in-memory ring). One row
 * per series and minute; replicas writing the same minute merge (count and sum add, min/max widen).
 * Rows older than monitoring.history.retentionDays are deleted.
 */
export const metricRollups = pgTable(
  'metric_rollups',
  {
    metric: text('metric').notNull(),
    /** The series' labels sorted by name, `k=v` joined: identifies the series with `metric`. */
    labelsKey: text('labels_key').notNull(),
    labels: jsonb('labels').$type<Record<string, string>>().notNull(),
    minute: timestamp('minute', { withTimezone: true, mode: 'date', precision: 3 }).notNull(),
    count: integer('count').notNull(),
    sum: doublePrecision('sum').notNull(),
    min: doublePrecision('min').notNull(),
    max: doublePrecision('max').notNull(),
  },
  (t) => [primaryKey({ columns: [t.metric, t.labelsKey, t.minute] }), index('metric_rollups_minute').on(t.minute)],
);

/** Auto-scaling policy of one model version (GraphQL `setScalingPolicy`); the policy itself is validated JSON (src/scaling/policy.ts). */
export const scalingPolicies = pgTable(
  'scaling_policies',
  {
    modelId: text('model_id').notNull(),
    version: text('version').notNull(),
    policy: jsonb('policy').$type<Record<string, unknown>>().notNull(),
    updatedAt: timestamp('updated_at', { withTimezone: true, mode: 'date', precision: 3 }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.modelId, t.version] })],
);

/** Decisions of the scaling controller with their reasons (GraphQL `scalingDecisions`); a bounded history per model version. */
export const scalingDecisions = pgTable(
  'scaling_decisions',
  {
    id: serial('id').primaryKey(),
    modelId: text('model_id').notNull(),
    version: text('version').notNull(),
    at: timestamp('at', { withTimezone: true, mode: 'date', precision: 3 }).notNull().defaultNow(),
    /** Instances asked for before and after. */
    fromInstances: integer('from_instances').notNull(),
    toInstances: integer('to_instances').notNull(),
    /** What the scaler asked for before bounds and stabilisation. */
    recommended: integer('recommended').notNull(),
    scaler: text('scaler').notNull(),
    actuator: text('actuator').notNull(),
    reason: text('reason').notNull(),
    /** applied | failed */
    outcome: text('outcome').notNull(),
    error: text('error'),
  },
  (t) => [index('scaling_decisions_model_at').on(t.modelId, t.version, t.id)],
);
