import { EventEmitter, on } from 'node:events';
import type { AlertEvent } from '../alerts/engine.ts';
import type { InstanceStatus } from '../models/registry.ts';
import type { CredentialRevocation } from '../plugin/contract.ts';

/** Topics and their payloads. */
export interface EventMap {
  modelEvents: ModelEvent;
  instanceHealth: InstanceHealthEvent;
  workerCommands: WorkerCommand;
  /** An API key, a user or a login session stopped being valid: every replica drops it from its caches. */
  authRevocations: CredentialRevocation;
  /** An alert changed state (inactive, pending, firing, resolved): the `alertEvents` subscription. */
  alertEvents: AlertEvent;
  /** A replica's live load of a scaled model version, for the replica that makes scaling decisions. */
  scalingSignals: ScalingReport;
  /** A gateway replica joined or left (src/db/replica-presence.ts): the others re-read the live replicas at once. */
  replicaPresence: ReplicaPresenceEvent;
}

export interface ReplicaPresenceEvent {
  /** The replica (host:pid:random). */
  id: string;
  state: 'joined' | 'left';
  at: Date;
}

/** What a replica that does not lead the scaling controller tells the one that does, each tick. */
export interface ScalingReport {
  /** The reporting controller (host:pid:random). */
  origin: string;
  model: string;
  version: string;
  /** Requests in flight on the version's instances from this replica. */
  inflight: number;
  /** Requests held at zero on this replica. */
  held: number;
  /** Ms since epoch. */
  at: number;
}

/** What changed in the registry (also the GraphQL `ModelEventType` enum). */
export const MODEL_EVENT_TYPES = [
  'MODEL_REGISTERED',
  'MODEL_UPDATED',
  'MODEL_DELETED',
  'VERSION_ADDED',
  'INSTANCE_ADDED',
  'INSTANCE_STATUS',
  'INSTANCE_REMOVED',
  'TRAFFIC_CHANGED',
  /** The placement reconciler put an instance on a worker (LOAD sent). */
  'INSTANCE_PLACED',
  /** The placement reconciler evicted an idle instance to make room (or trimmed an extra replica). */
  'INSTANCE_EVICTED',
  /** A version's instances could not all be placed: `reason` names what is short. */
  'PLACEMENT_FAILED',
  'SCALING_DECISION',
] as const;
export type ModelEventType = (typeof MODEL_EVENT_TYPES)[number];

/** What a worker is told to do (also the GraphQL `WorkerCommandAction` enum). */
export const WORKER_COMMAND_ACTIONS = ['LOAD', 'UNLOAD'] as const;
export type WorkerCommandAction = (typeof WORKER_COMMAND_ACTIONS)[number];

export interface ModelEvent {
  type: ModelEventType;
  modelId: string;
  version?: string;
  instanceId?: string;
  /** INSTANCE_STATUS: the instance's new status. */
  status?: InstanceStatus;
  /** Placement events: the worker and device. */
  workerId?: string;
  device?: string;
  /** Placement events: why (what is short, what the eviction made room for). */
  reason?: string;
  at: Date;
  /** The ModelRegistry that made the change (one per gateway replica): that replica's Fleet applied it already. */
  origin?: string;
  /** The registry version the change was stored at (replicas tell from it whether they missed one). */
  registryVersion?: number;
  /** SCALING_DECISION: the instances asked for before and after, what the scaler recommended, why, and how it went. */
  scaling?: { from: number; to: number; recommended: number; reason: string; outcome: 'applied' | 'failed'; error?: string };
}

export interface InstanceHealthEvent {
  instanceId: string;
  modelId: string;
  version: string;
  /** healthy | unhealthy | ejected | circuit-open | circuit-half-open */
  state: string;
  reason?: string;
  at: Date;
}

export interface WorkerCommand {
  workerId: string;
  action: WorkerCommandAction;
  instanceId: string;
  modelId: string;
  version: string;
  endpoint?: string;
  options: Record<string, unknown>;
}

/**
 * In-process publish/subscribe for live events (GraphQL subscriptions). One process: an
 * EventEmitter. Several gateway replicas: a Redis-backed bus implements the same interface.
 */
export interface EventBus {
  publish<T extends keyof EventMap>(topic: T, event: EventMap[T]): void;
  subscribe<T extends keyof EventMap>(topic: T, signal?: AbortSignal): AsyncIterable<EventMap[T]>;
  /**
   * A shared bus calls `listener` each time it is connected again after losing its connection:
   * events published meanwhile were lost, so state kept current by events must be re-read.
   */
  onReconnect?(listener: () => void, signal?: AbortSignal): void;
}

export function createLocalEventBus(): EventBus {
  const emitter = new EventEmitter();
  emitter.setMaxListeners(0);
  return {
    publish(topic, event) {
      emitter.emit(topic, event);
    },
    async *subscribe(topic, signal) {
      try {
        for await (const [event] of on(emitter, topic, { signal })) yield event;
      } catch (err) {
        if ((err as Error).name !== 'AbortError') throw err;
      }
    },
  };
}
