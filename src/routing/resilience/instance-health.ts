import type { Logger } from 'pino';
import type { Config } from '../../config/schema.ts';
import type { EventBus } from '../../events/bus.ts';
import type { Fleet } from '../../models/fleet.ts';
import { CircuitBreakers } from './circuit-breaker.ts';
import { HealthProber } from './health-prober.ts';
import { OutlierDetector, type OutlierEvent } from './outlier-detector.ts';
import { RetryBudget } from './retry-budget.ts';

type RouterConfig = Config['router'];

/** A change of an instance's health, as the metrics count it. */
export interface HealthChange {
  instanceId: string;
  modelId: string;
  version: string;
  /** What decided it: the circuit breaker, outlier detection, active probes or an operator's reset. */
  source: 'breaker' | 'outlier' | 'probe' | 'operator';
  /** The state afterwards (healthy, circuit-open, circuit-half-open, ejected, unhealthy, …). */
  state: string;
}

/**
 * Everything the router knows about an instance's health, in one place: the circuit breaker
 * (per instance, so a single-instance model is protected too), passive outlier ejection (per
 * model version, capped by max ejection percent), active probes through the backend's health
 * endpoint, and the retry budget. Changes are published on the `instanceHealth` topic.
 */
export class InstanceHealth {
  private readonly breakers: CircuitBreakers;
  private readonly detectors = new Map<string, OutlierDetector>();
  private readonly budget: RetryBudget;
  private readonly prober: HealthProber | undefined;
  private readonly probed = new Map<string, boolean>();
  /** Instance → ms since epoch before which it gets no requests (upstream 429 with Retry-After). */
  private readonly throttled = new Map<string, number>();
  private readonly leaveListeners: Array<(instanceId: string) => void> = [];
  private readonly changeListeners: Array<(c: HealthChange) => void> = [];

  constructor(
    private readonly fleet: Fleet,
    private readonly events: EventBus,
    private readonly config: RouterConfig,
    private readonly logger: Logger,
  ) {
    this.budget = new RetryBudget(config.retryBudget);
    this.breakers = new CircuitBreakers(config.circuitBreaker, (id, s) =>
      this.publish(id, s.to === 'closed' ? 'healthy' : `circuit-${s.to}`, s.reason, 'breaker'),
    );
    if (config.healthCheck.enabled) {
      this.prober = new HealthProber({
        ...config.healthCheck,
        onChange: (c) => {
          if (c.to === 'unknown') return;
          this.probed.set(c.id, c.to === 'healthy');
          this.publish(c.id, c.to, c.detail, 'probe');
        },
      });
    }
  }

  private publish(instanceId: string, state: string, reason: string | undefined, source: HealthChange['source']): void {
    const h = this.fleet.handle(instanceId);
    if (!h) return;
    for (const fn of this.changeListeners) fn({ instanceId, modelId: h.modelId, version: h.version, source, state });
    this.logger.info({ instance: instanceId, state, reason }, 'instance health changed');
    this.events.publish('instanceHealth', { instanceId, modelId: h.modelId, version: h.version, state, reason, at: new Date() });
  }

  private detector(id: string): OutlierDetector | undefined {
    const h = this.fleet.handle(id);
    if (!h) return undefined;
    const key = `${h.modelId}@${h.version}`;
    let d = this.detectors.get(key);
    if (!d) {
      d = new OutlierDetector({
        ...this.config.outlierDetection,
        onChange: (e: OutlierEvent) => {
          if (e.reason !== 'removed') this.publish(e.id, e.ejected ? 'ejected' : this.stateOf(e.id), e.reason, 'outlier');
        },
      });
      this.detectors.set(key, d);
    }
    const pool = this.fleet.view(h.modelId)?.versions.get(h.version);
    if (pool) for (const p of pool) d.addHost(p.id);
    return d;
  }

  /**
   * Starts probing an instance's health endpoint (no-op when probes are off or it is probed already).
   * The instance may not be loaded on this replica yet: READY in the shared registry can be another
   * replica's load, heard of while this one's own load of it is still running. Such a probe gives no
   * verdict; were it a failure, the instance would be `unhealthy` here (no traffic) for as many probe
   * intervals as `healthyThreshold` after its load ended.
   */
  track(instanceId: string): void {
    if (!this.prober || this.prober.has(instanceId)) return;
    this.prober.add(instanceId, async (signal) => {
      const loaded = this.fleet.handle(instanceId)?.loaded;
      if (!loaded) return { ok: false, skipped: true, detail: 'not loaded on this replica' };
      return loaded.health(signal);
    });
  }

  /**
   * Forgets everything about an instance that left the pool (removed, unloaded, failed): probes,
   * breaker, outlier host, throttle; then tells the leave listeners (balancers forget it).
   */
  untrack(instanceId: string): void {
    this.prober?.remove(instanceId);
    this.probed.delete(instanceId);
    this.breakers.forget(instanceId);
    this.throttled.delete(instanceId);
    for (const d of this.detectors.values()) d.removeHost(instanceId);
    for (const fn of this.leaveListeners) {
      try {
        fn(instanceId);
      } catch (err) {
        this.logger.warn({ err, instance: instanceId }, 'instance leave listener failed');
      }
    }
  }

  /**
   * Operator override: closes the instance's circuit, lifts its ejection (its ejection count
   * starts again from zero) and its 429 throttle. Active probes keep running and give their
   * verdict on their next round. Returns the state afterwards.
   */
  reset(instanceId: string): string {
    this.breakers.peek(instanceId)?.reset();
    this.throttled.delete(instanceId);
    for (const d of this.detectors.values()) d.removeHost(instanceId);
    this.detector(instanceId); // adds it back, un-ejected
    const state = this.stateOf(instanceId);
    this.publish(instanceId, state, 'reset by an operator', 'operator');
    return state;
  }

  /** Called on every health change of an instance on this replica (breaker transitions, ejections, probe verdicts, resets). */
  onChange(fn: (c: HealthChange) => void): void {
    this.changeListeners.push(fn);
  }

  /** Called with the id of every instance that leaves the pool (after untrack). */
  onLeave(fn: (instanceId: string) => void): void {
    this.leaveListeners.push(fn);
  }

  /** The upstream asked us to back off (429 + Retry-After): no requests to the instance for `ms`. */
  throttle(id: string, ms: number): void {
    if (!(ms > 0)) return;
    const until = Date.now() + ms;
    if ((this.throttled.get(id) ?? 0) < until) this.throttled.set(id, until);
  }

  /** When the instance's throttle ends (ms since epoch), or undefined when not throttled. */
  throttledUntil(id: string, now = Date.now()): number | undefined {
    const until = this.throttled.get(id);
    if (until === undefined) return undefined;
    if (until <= now) {
      this.throttled.delete(id);
      return undefined;
    }
    return until;
  }

  /** Whether the router may send a request to the instance now (does not consume a half-open trial). */
  allows(id: string): boolean {
    if (this.probed.get(id) === false) return false;
    if (this.throttled.size && this.throttledUntil(id) !== undefined) return false;
    const b = this.breakers.peek(id);
    if (b && !b.canAllow()) return false;
    const h = this.fleet.handle(id);
    const d = h && this.detectors.get(`${h.modelId}@${h.version}`);
    return !(d && d.isEjected(id));
  }

  /** The router chose this instance: consumes a half-open trial when the breaker is half-open. */
  onAttempt(id: string): void {
    this.breakers.get(id).allow();
  }

  /** Outcome of a request that reached the instance (client errors are not reported here). */
  onResult(id: string, ok: boolean): void {
    const b = this.breakers.get(id);
    const d = this.detector(id);
    if (ok) {
      b.onSuccess();
      d?.recordSuccess(id);
    } else {
      b.onFailure();
      d?.recordFailure(id);
    }
  }

  /** A request sent to the instance was abandoned without a verdict (hedge loser, client gone): frees a half-open trial slot. */
  onCancel(id: string): void {
    this.breakers.peek(id)?.onCancel();
  }

  /** healthy | unhealthy (probes) | ejected (outlier) | circuit-open | circuit-half-open | throttled (429) | unknown (no verdict yet). */
  stateOf(id: string): string {
    if (this.probed.get(id) === false) return 'unhealthy';
    const b = this.breakers.peek(id);
    const state = b?.state;
    if (state === 'open') return 'circuit-open';
    if (state === 'half-open') return 'circuit-half-open';
    const h = this.fleet.handle(id);
    const d = h && this.detectors.get(`${h.modelId}@${h.version}`);
    if (d?.isEjected(id)) return 'ejected';
    if (this.throttled.size && this.throttledUntil(id) !== undefined) return 'throttled';
    return b || this.probed.has(id) ? 'healthy' : 'unknown';
  }

  recordRequest(): void {
    this.budget.recordRequest();
  }

  /** Takes one retry from the budget; false when retries would exceed it. */
  tryRetry(): boolean {
    return this.budget.tryAcquire();
  }

  /** Probes instances while they are ready: tracks those ready now and follows status events. */
  watch(signal: AbortSignal): void {
    for (const h of this.fleet.allHandles()) if (h.status === 'ready') this.track(h.id);
    void (async () => {
      for await (const e of this.events.subscribe('modelEvents', signal)) {
        if (!e.instanceId) continue;
        if (e.type === 'INSTANCE_STATUS' && e.status === 'ready') this.track(e.instanceId);
        else if (e.type === 'INSTANCE_REMOVED' || (e.type === 'INSTANCE_STATUS' && (e.status === 'unloaded' || e.status === 'failed')))
          this.untrack(e.instanceId);
      }
    })();
  }

  close(): void {
    this.prober?.stop();
  }
}
