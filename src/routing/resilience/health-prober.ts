/**
 * Active health checking: probes each target every `intervalMs` (± jitter) with a
 * `timeoutMs` deadline and turns results into a state with hysteresis:
 *
 *   unknown ──first result──▶ healthy | unhealthy
 *   healthy ──`unhealthyThreshold` failures in a row──▶ unhealthy
 *   unhealthy ──`healthyThreshold` successes in a row──▶ healthy
 *
 * Probes of one target never overlap (the next is scheduled when the previous ends). A
 * probe that throws, answers `{ ok: false }` or exceeds the timeout is a failure; its
 * AbortSignal aborts at the timeout (a probe that ignores the signal is still counted as
 * failed at the timeout and its late answer is dropped). A probe that answers `{ skipped: true }`
 * had nothing to probe yet (say the instance is not loaded here): no verdict, the state and the
 * counts in a row stay as they were. Probes must be cheap (the backend's `health()`, never a
 * billable inference).
 *
 * First probe of a target: after a random delay in [0, jitter × interval] so that targets
 * added together do not probe in lock-step. Timers are unref()'d; stop() clears every
 * timer and aborts probes in flight. The settings' defaults live in the config
 * (`router.healthCheck`; Envoy: interval/timeout required, thresholds typically 2–3).
 */

export type HealthState = 'unknown' | 'healthy' | 'unhealthy';

export interface ProbeResult {
  ok: boolean;
  detail?: string;
  /** Nothing to probe yet (the target is not there to answer): no verdict either way, `ok` is ignored. */
  skipped?: boolean;
}

export type Probe = (signal: AbortSignal) => Promise<ProbeResult> | ProbeResult;

export interface HealthChange {
  id: string;
  from: HealthState;
  to: HealthState;
  /** Detail of the probe that caused the change (error message, 'timeout', or the probe's detail). */
  detail?: string;
  at: number;
}

/** Resolved settings (config `router.healthCheck` holds the defaults). */
export interface HealthProberSettings {
  /** Time between the end of one probe and the start of the next, ms. */
  intervalMs: number;
  /** Probe deadline, ms. */
  timeoutMs: number;
  /** Successes in a row to become healthy. */
  healthyThreshold: number;
  /** Failures in a row to become unhealthy. */
  unhealthyThreshold: number;
  /** ± fraction of the interval added at random to each wait. */
  jitter: number;
}

export interface HealthProberOptions extends HealthProberSettings {
  onChange?: (change: HealthChange) => void;
  /** Source of jitter (Math.random when absent). */
  random?: () => number;
}

interface Target {
  readonly id: string;
  readonly probe: Probe;
  state: HealthState;
  successes: number;
  failures: number;
  timer: ReturnType<typeof setTimeout> | undefined;
  inFlight: AbortController | undefined;
  lastDetail: string | undefined;
  lastProbeAt: number | undefined;
  removed: boolean;
}

export class HealthProber {
  private readonly o: HealthProberSettings;
  private readonly random: () => number;
  private readonly onChange: ((c: HealthChange) => void) | undefined;
  private readonly targets = new Map<string, Target>();
  private stopped = false;

  constructor(options: HealthProberOptions) {
    this.o = {
      intervalMs: options.intervalMs,
      timeoutMs: options.timeoutMs,
      healthyThreshold: Math.max(1, Math.floor(options.healthyThreshold)),
      unhealthyThreshold: Math.max(1, Math.floor(options.unhealthyThreshold)),
      jitter: Math.min(1, Math.max(0, options.jitter)),
    };
    this.random = options.random ?? Math.random;
    this.onChange = options.onChange;
  }

  /** Starts probing `id` (replacing an existing target of that id; its state restarts at unknown). */
  add(id: string, probe: Probe): void {
    if (this.stopped) throw new Error('HealthProber is stopped');
    this.remove(id);
    const t: Target = {
      id,
      probe,
      state: 'unknown',
      successes: 0,
      failures: 0,
      timer: undefined,
      inFlight: undefined,
      lastDetail: undefined,
      lastProbeAt: undefined,
      removed: false,
    };
    this.targets.set(id, t);
    this.schedule(t, this.random() * this.o.jitter * this.o.intervalMs);
  }

  /** Stops probing `id`; returns whether it was known. */
  remove(id: string): boolean {
    const t = this.targets.get(id);
    if (!t) return false;
    this.targets.delete(id);
    this.dispose(t);
    return true;
  }

  has(id: string): boolean {
    return this.targets.has(id);
  }

  state(id: string): HealthState | undefined {
    return this.targets.get(id)?.state;
  }

  /** State and last probe of every target. */
  snapshot(): Array<{ id: string; state: HealthState; detail?: string; lastProbeAt?: number }> {
    return [...this.targets.values()].map((t) => ({
      id: t.id,
      state: t.state,
      ...(t.lastDetail !== undefined ? { detail: t.lastDetail } : {}),
      ...(t.lastProbeAt !== undefined ? { lastProbeAt: t.lastProbeAt } : {}),
    }));
  }

  get size(): number {
    return this.targets.size;
  }

  /** Timers and probes outstanding (0 after stop()); for tests and leak checks. */
  pending(): { timers: number; inFlight: number } {
    let timers = 0;
    let inFlight = 0;
    for (const t of this.targets.values()) {
      if (t.timer) timers++;
      if (t.inFlight) inFlight++;
    }
    return { timers, inFlight };
  }

  /** Clears every timer and aborts probes in flight; the prober cannot be restarted. */
  stop(): void {
    this.stopped = true;
    for (const t of this.targets.values()) this.dispose(t);
    this.targets.clear();
  }

  private dispose(t: Target): void {
    t.removed = true;
    if (t.timer) {
      clearTimeout(t.timer);
      t.timer = undefined;
    }
    if (t.inFlight) {
      t.inFlight.abort(new Error('health probe cancelled'));
      t.inFlight = undefined;
    }
  }

  private schedule(t: Target, delayMs: number): void {
    if (t.removed || this.stopped) return;
    t.timer = setTimeout(
      () => {
        t.timer = undefined;
        void this.run(t);
      },
      Math.max(0, delayMs),
    );
    t.timer.unref?.();
  }

  private nextDelay(): number {
    return this.o.intervalMs * (1 + this.o.jitter * (2 * this.random() - 1));
  }

  private async run(t: Target): Promise<void> {
    if (t.removed) return;
    const ac = new AbortController();
    t.inFlight = ac;
    const result = await this.probeOnce(t, ac);
    if (t.inFlight === ac) t.inFlight = undefined;
    if (t.removed) return;
    if (!result.skipped) {
      t.lastProbeAt = Date.now();
      t.lastDetail = result.detail;
      this.apply(t, result);
    }
    this.schedule(t, this.nextDelay());
  }

  private async probeOnce(t: Target, ac: AbortController): Promise<ProbeResult> {
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<ProbeResult>((resolve) => {
      onAbort = () =>
        resolve({ ok: false, detail: ac.signal.reason instanceof Error && ac.signal.reason.message === 'health probe cancelled' ? 'cancelled' : 'timeout' });
      ac.signal.addEventListener('abort', onAbort, { once: true });
    });
    const timer = setTimeout(() => ac.abort(new Error('health probe timeout')), this.o.timeoutMs);
    timer.unref?.();
    try {
      const r = await Promise.race([Promise.resolve().then(() => t.probe(ac.signal)), aborted]);
      if (ac.signal.aborted) return { ok: false, detail: 'timeout' };
      return r && typeof r === 'object' ? r : { ok: false, detail: 'probe returned no result' };
    } catch (err) {
      return { ok: false, detail: ac.signal.aborted ? 'timeout' : err instanceof Error ? err.message : String(err) };
    } finally {
      clearTimeout(timer);
      if (onAbort) ac.signal.removeEventListener('abort', onAbort);
    }
  }

  private apply(t: Target, r: ProbeResult): void {
    const from = t.state;
    let to: HealthState = from;
    if (r.ok === true) {
      t.successes++;
      t.failures = 0;
      if (from === 'unknown' || (from === 'unhealthy' && t.successes >= this.o.healthyThreshold)) to = 'healthy';
    } else {
      t.failures++;
      t.successes = 0;
      if (from === 'unknown' || (from === 'healthy' && t.failures >= this.o.unhealthyThreshold)) to = 'unhealthy';
    }
    if (to === from) return;
    t.state = to;
    if (this.onChange) {
      const change: HealthChange = { id: t.id, from, to, at: Date.now() };
      if (r.detail !== undefined) change.detail = r.detail;
      try {
        this.onChange(change);
      } catch {
        /* listeners must not stop probing */
      }
    }
  }
}
