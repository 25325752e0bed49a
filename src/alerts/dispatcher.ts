/**
 * Delivers alert notifications to the alert-sink plugins, off the request path. `notify(alert)`
 * only enqueues (per sink, bounded) and returns; each sink has one lane that delivers its queue in
 * order (a resolution never overtakes its firing), retrying a failed attempt with exponential
 * backoff and jitter. After `maxAttempts` failures, or when the queue is full, or when shutdown
 * leaves it undelivered, the notification becomes a dead-letter record (table
 * `alert_dead_letters`): nothing is dropped without a trace.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Alert, AlertSink } from '../plugin/contract.ts';
import type { AlertDeliveryConfig } from './config.ts';

export type DeadLetterReason = 'failed' | 'queue_full' | 'shutdown';

export interface DeadLetter {
  sink: string;
  alert: Alert;
  reason: DeadLetterReason;
  /** Attempts made (0 when never tried). */
  attempts: number;
  /** The last attempt's error message. */
  lastError?: string;
}

export interface AlertDispatcherOptions {
  sinks: ReadonlyArray<{ name: string; sink: AlertSink }>;
  delivery: AlertDeliveryConfig;
  /** Stores one dead letter (the gateway writes the `alert_dead_letters` table). */
  deadLetter(letter: DeadLetter): Promise<void>;
  logger: Logger;
  metrics?: Registry;
  /** Random source in [0, 1) for the jitter (default Math.random). */
  random?: () => number;
}

const MAX_ERROR_CHARS = 1_000;

function errorMessage(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.length > MAX_ERROR_CHARS ? `${text.slice(0, MAX_ERROR_CHARS)}…` : text;
}

/** Rejects when `signal` aborts: a sink that ignores its signal cannot hold its lane past the attempt timeout. */
function aborted(signal: AbortSignal): { promise: Promise<never>; dispose(): void } {
  let onAbort = (): void => {};
  const promise = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
  promise.catch(() => {});
  return { promise, dispose: () => signal.removeEventListener('abort', onAbort) };
}

/** What a lane needs from its dispatcher. */
interface LaneHooks {
  readonly delivery: AlertDeliveryConfig;
  readonly log: Logger;
  backoffMs(attempt: number): number;
  /** One attempt ended (`ok`, `error`), or a notification was delivered. */
  count(sink: string, event: 'ok' | 'error' | 'delivered'): void;
  deadLetter(letter: DeadLetter): Promise<void>;
}

class SinkLane {
  readonly queue: Alert[] = [];
  private running: Promise<void> | undefined;
  /** Aborted when shutdown stops waiting: cancels the attempt or backoff in progress. */
  readonly stop = new AbortController();

  constructor(
    readonly name: string,
    private readonly sink: AlertSink,
    private readonly d: LaneHooks,
  ) {}

  push(alert: Alert): void {
    this.queue.push(alert);
    this.running ??= this.run().finally(() => (this.running = undefined));
  }

  /** Resolves when the queue is empty and nothing is being delivered. */
  idle(): Promise<void> {
    return this.running ?? Promise.resolve();
  }

  private async run(): Promise<void> {
    while (this.queue.length > 0) {
      const alert = this.queue[0]!;
      await this.deliver(alert);
      this.queue.shift();
    }
  }

  private async deliver(alert: Alert): Promise<void> {
    const { delivery } = this.d;
    let lastError: string | undefined;
    let attempts = 0;
    while (attempts < delivery.maxAttempts && !this.stop.signal.aborted) {
      attempts++;
      const signal = AbortSignal.any([this.stop.signal, AbortSignal.timeout(delivery.attemptTimeoutMs)]);
      const cut = aborted(signal);
      try {
        await Promise.race([this.sink.send(alert, signal), cut.promise]);
        this.d.count(this.name, 'ok');
        this.d.count(this.name, 'delivered');
        return;
      } catch (err) {
        lastError = errorMessage(err);
        this.d.count(this.name, 'error');
        this.d.log.warn({ sink: this.name, alertId: alert.id, state: alert.state, attempt: attempts, error: lastError }, 'alert delivery attempt failed');
      } finally {
        cut.dispose();
      }
      if (attempts < delivery.maxAttempts) {
        try {
          await sleep(this.d.backoffMs(attempts), undefined, { signal: this.stop.signal });
        } catch {
          break; // shutdown
        }
      }
    }
    await this.d.deadLetter({
      sink: this.name,
      alert,
      reason: this.stop.signal.aborted ? 'shutdown' : 'failed',
      attempts,
      ...(lastError !== undefined ? { lastError } : {}),
    });
  }
}

export class AlertDispatcher {
  private readonly lanes: SinkLane[];
  private closing = false;
  /** Dead letters written from notify() (full queue, after close): close() waits for them. */
  private readonly pendingLetters = new Set<Promise<void>>();
  private readonly notifications: Counter<'sink' | 'outcome'> | undefined;
  private readonly attempts: Counter<'sink' | 'result'> | undefined;

  constructor(private readonly opts: AlertDispatcherOptions) {
    const hooks: LaneHooks = {
      delivery: opts.delivery,
      log: opts.logger,
      backoffMs: (attempt) => this.backoffMs(attempt),
      count: (sink, event) => (event === 'delivered' ? this.notifications?.inc({ sink, outcome: event }) : this.attempts?.inc({ sink, result: event })),
      deadLetter: (letter) => this.deadLetter(letter),
    };
    this.lanes = opts.sinks.map((s) => new SinkLane(s.name, s.sink, hooks));
    if (opts.metrics) {
      const registers = [opts.metrics];
      this.notifications = new Counter({
        name: 'mcp_alert_notifications_total',
        help: 'Alert notifications per sink by outcome: delivered, or dead-lettered (failed, queue_full, shutdown).',
        labelNames: ['sink', 'outcome'],
        registers,
      });
      this.attempts = new Counter({
        name: 'mcp_alert_delivery_attempts_total',
        help: 'Alert delivery attempts per sink by result (ok, error).',
        labelNames: ['sink', 'result'],
        registers,
      });
      const lanes = this.lanes;
      new Gauge({
        name: 'mcp_alert_queue_depth',
        help: 'Alert notifications waiting per sink, the one being delivered included.',
        labelNames: ['sink'],
        registers,
        collect() {
          for (const lane of lanes) this.set({ sink: lane.name }, lane.queue.length);
        },
      });
    }
  }

  /** Configured names of the sinks notifications go to. */
  get sinks(): string[] {
    return this.lanes.map((l) => l.name);
  }

  /**
   * Queues one alert state change for every sink and returns at once (never throws, never waits
   * on a sink). A sink whose queue is full dead-letters it (`queue_full`); after close(), every sink does (`shutdown`).
   */
  notify(alert: Alert): void {
    const copy: Alert = { ...alert, labels: { ...alert.labels } };
    for (const lane of this.lanes) this.enqueue(lane, copy);
  }

  /**
   * Queues `alert` again for sink `sink` only (a dead letter redelivered by hand), as notify()
   * does for every sink; false when no sink has that name.
   */
  redeliver(sink: string, alert: Alert): boolean {
    const lane = this.lanes.find((l) => l.name === sink);
    if (!lane) return false;
    this.enqueue(lane, { ...alert, labels: { ...alert.labels } });
    return true;
  }

  private enqueue(lane: SinkLane, copy: Alert): void {
    if (!this.closing && lane.queue.length < this.opts.delivery.queueSize) return lane.push(copy);
    const written = this.deadLetter({ sink: lane.name, alert: copy, reason: this.closing ? 'shutdown' : 'queue_full', attempts: 0 });
    this.pendingLetters.add(written);
    void written.finally(() => this.pendingLetters.delete(written));
  }

  /** Resolves when every queue is empty (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.lanes.some((l) => l.queue.length > 0)) await Promise.all(this.lanes.map((l) => l.idle()));
  }

  /** Wait before retry number `attempt` (1: after the first failure), ms. */
  backoffMs(attempt: number): number {
    const { initialBackoffMs, backoffMultiplier, maxBackoffMs, jitter } = this.opts.delivery;
    const base = Math.min(maxBackoffMs, initialBackoffMs * backoffMultiplier ** (attempt - 1));
    return Math.round(base * (1 - jitter * (this.opts.random ?? Math.random)()));
  }

  private async deadLetter(letter: DeadLetter): Promise<void> {
    this.notifications?.inc({ sink: letter.sink, outcome: letter.reason });
    this.opts.logger.error(
      {
        sink: letter.sink,
        alertId: letter.alert.id,
        rule: letter.alert.rule,
        state: letter.alert.state,
        reason: letter.reason,
        attempts: letter.attempts,
        error: letter.lastError,
      },
      'alert notification not delivered; dead-lettered',
    );
    try {
      await this.opts.deadLetter(letter);
    } catch (err) {
      this.opts.logger.error({ sink: letter.sink, alertId: letter.alert.id, error: errorMessage(err) }, 'could not store an alert dead letter');
    }
  }

  /**
   * Stops taking notifications, gives the queues `drainMs` to empty, then cancels what is in flight
   * and dead-letters every notification left (`shutdown`).
   */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const drained = this.idle();
    const timer = sleep(this.opts.delivery.drainMs, undefined, { ref: false }).then(() => 'timeout' as const);
    if ((await Promise.race([drained.then(() => 'drained' as const), timer])) === 'drained') {
      await Promise.all(this.pendingLetters);
      return;
    }
    for (const lane of this.lanes) lane.stop.abort(new Error('the gateway is shutting down'));
    // Each lane ends its current attempt and dead-letters the rest of its queue (`shutdown`).
    await Promise.all(this.lanes.map((l) => l.idle()));
    await Promise.all(this.pendingLetters);
  }
}
