import { describe, expect, it } from 'vitest';
import { configSchema } from '../../config/schema.ts';
import { CircuitBreaker, CircuitBreakers, type CircuitBreakerOptions, type CircuitStateChange } from './circuit-breaker.ts';

/** The config's defaults (what a user gets), with the test's settings on top. */
const DEFAULTS = configSchema.parse({}).router.circuitBreaker;
function breaker(options: Partial<CircuitBreakerOptions>): CircuitBreaker {
  return new CircuitBreaker({ ...DEFAULTS, halfOpenIntervalMs: options.openMs ?? DEFAULTS.halfOpenIntervalMs, ...options });
}

function clock(start = 1_000_000) {
  const c = { t: start, now: () => c.t };
  return c;
}

describe('CircuitBreaker', () => {
  it('opens after N consecutive failures (a success resets the count)', () => {
    const c = clock();
    const changes: CircuitStateChange[] = [];
    const b = breaker({ consecutiveFailures: 3, failureRateThreshold: 0, now: c.now, onStateChange: (x) => changes.push(x) });
    b.onFailure();
    b.onFailure();
    b.onSuccess();
    b.onFailure();
    b.onFailure();
    expect(b.state).toBe('closed');
    b.onFailure();
    expect(b.state).toBe('open');
    expect(b.allow()).toBe(false);
    expect(changes).toEqual([expect.objectContaining({ from: 'closed', to: 'open', reason: 'consecutive-failures', retryAt: c.t + 5000, openings: 1 })]);
  });

  it('opens on failure rate over the window only with enough requests', () => {
    const c = clock();
    const b = breaker({ consecutiveFailures: 0, failureRateThreshold: 0.5, minRequests: 10, windowMs: 10_000, now: c.now });
    for (let i = 0; i < 4; i++) {
      b.onFailure();
      b.onSuccess();
    }
    expect(b.state).toBe('closed'); // 8 requests < 10
    b.onSuccess();
    b.onFailure(); // 10 requests, 5 failures
    expect(b.state).toBe('open');
  });

  it('forgets failures that slid out of the window', () => {
    const c = clock();
    const b = breaker({ consecutiveFailures: 0, failureRateThreshold: 0.5, minRequests: 4, windowMs: 10_000, now: c.now });
    b.onFailure();
    b.onFailure();
    b.onFailure();
    c.t += 11_000;
    b.onSuccess();
    b.onSuccess();
    b.onSuccess();
    b.onFailure();
    expect(b.windowCounts()).toEqual({ requests: 4, failures: 1 });
    expect(b.state).toBe('closed');
  });

  it('half-opens after the cool-down, lets one probe through, closes on success', () => {
    const c = clock();
    const changes: string[] = [];
    const b = breaker({ consecutiveFailures: 1, now: c.now, onStateChange: (x) => changes.push(`${x.from}>${x.to}:${x.reason}`) });
    b.onFailure();
    c.t += 4_999;
    expect(b.allow()).toBe(false);
    c.t += 1;
    expect(b.state).toBe('half-open');
    expect(b.canAllow()).toBe(true);
    expect(b.allow()).toBe(true);
    expect(b.allow()).toBe(false); // halfOpenMaxProbes = 1
    expect(b.canAllow()).toBe(false);
    b.onSuccess();
    expect(b.state).toBe('closed');
    expect(b.allow()).toBe(true);
    expect(changes).toEqual(['closed>open:consecutive-failures', 'open>half-open:cool-down-elapsed', 'half-open>closed:probe-succeeded']);
  });

  it('re-opens on a failed probe with a growing, capped cool-down; a close resets it', () => {
    const c = clock();
    const retryAts: number[] = [];
    const b = breaker({
      consecutiveFailures: 1,
      openMs: 1000,
      backoffMultiplier: 2,
      maxOpenMs: 5000,
      now: c.now,
      onStateChange: (x) => {
        if (x.to === 'open') retryAts.push(x.retryAt! - x.at);
      },
    });
    b.onFailure();
    for (let i = 0; i < 5; i++) {
      c.t = b.retryAt!;
      expect(b.allow()).toBe(true);
      b.onFailure();
    }
    expect(retryAts).toEqual([1000, 2000, 4000, 5000, 5000, 5000]);
    c.t = b.retryAt!;
    expect(b.allow()).toBe(true);
    b.onSuccess();
    b.onFailure();
    expect(retryAts.at(-1)).toBe(1000);
  });

  it('allows another probe when the previous one never answered (per half-open interval)', () => {
    const c = clock();
    const b = breaker({ consecutiveFailures: 1, openMs: 1000, halfOpenIntervalMs: 500, halfOpenMaxProbes: 2, now: c.now });
    b.onFailure();
    c.t += 1000;
    expect(b.allow()).toBe(true);
    expect(b.allow()).toBe(true);
    expect(b.allow()).toBe(false);
    c.t += 499;
    expect(b.allow()).toBe(false);
    c.t += 1;
    expect(b.allow()).toBe(true);
  });

  it('onCancel frees a probe slot; successThreshold needs several successes', () => {
    const c = clock();
    const b = breaker({ consecutiveFailures: 1, successThreshold: 2, now: c.now });
    b.onFailure();
    c.t += 5000;
    expect(b.allow()).toBe(true);
    b.onCancel();
    expect(b.allow()).toBe(true);
    b.onSuccess();
    expect(b.state).toBe('half-open');
    expect(b.allow()).toBe(true);
    b.onSuccess();
    expect(b.state).toBe('closed');
  });

  it('ignores late failures while open, and works for a lone instance (no instance-count logic)', () => {
    const c = clock();
    const b = breaker({ consecutiveFailures: 2, now: c.now });
    b.onFailure();
    b.onFailure();
    const until = b.retryAt;
    b.onFailure();
    b.onFailure();
    expect(b.retryAt).toBe(until);
    b.reset();
    expect(b.state).toBe('closed');
  });

  it('a throwing listener does not break the breaker', () => {
    const b = breaker({
      consecutiveFailures: 1,
      onStateChange: () => {
        throw new Error('boom');
      },
    });
    expect(() => b.onFailure()).not.toThrow();
    expect(b.state).toBe('open');
  });
});

describe('CircuitBreakers', () => {
  it('keeps one breaker per id and reports changes with the id', () => {
    const c = clock();
    const seen: string[] = [];
    const set = new CircuitBreakers({ ...DEFAULTS, consecutiveFailures: 1, now: c.now }, (id, x) => seen.push(`${id}:${x.to}`));
    set.get('a').onFailure();
    expect(set.get('a').state).toBe('open');
    expect(set.get('b').state).toBe('closed');
    expect(seen).toEqual(['a:open']);
    set.forget('a');
    expect(set.has('a')).toBe(false);
    expect([...set.ids()]).toEqual(['b']);
  });
});
