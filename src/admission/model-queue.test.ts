import { describe, expect, it } from 'vitest';
import { McpError } from '../errors.ts';
import { admissionPolicySchema, type AdmissionPolicy } from './config.ts';
import { ModelQueue, OUTCOMES, type AdmitRequest, type Outcome } from './model-queue.ts';
import { ReplicaShare } from './replica-share.ts';
import { TenantStats, TenantTable } from './tenant-stats.ts';
import { PASS, type AdmissionTicket } from './ticket.ts';

function setup(policy: Partial<AdmissionPolicy> = {}, instances = 1, share?: ReplicaShare) {
  const fleet = { ready: instances };
  const counts = Object.fromEntries(OUTCOMES.map((o) => [o, 0])) as Record<Outcome, number>;
  const counters = Object.fromEntries(OUTCOMES.map((o) => [o, { inc: () => void counts[o]++ }])) as Record<Outcome, { inc(): void }>;
  const q = new ModelQueue(
    'm',
    'v1',
    admissionPolicySchema.parse({ maxConcurrentPerInstance: 1, ...policy }),
    () => fleet.ready,
    new TenantTable(2, (l) => new TenantStats(l, undefined)),
    counters,
    share,
  );
  const ctl = new AbortController();
  const req = (r: Partial<AdmitRequest> = {}): AdmitRequest => ({ tenant: 'a', weight: 1, level: 2, deadline: Date.now() + 60_000, signal: ctl.signal, ...r });
  return { q, fleet, counts, req, ctl };
}

/** The error a refused admission throws (synchronously) or rejects with. */
async function refusal(f: () => AdmissionTicket | Promise<AdmissionTicket>): Promise<McpError> {
  try {
    await f();
  } catch (err) {
    return err as McpError;
  }
  throw new Error('admitted');
}

const settled = async <T>(p: Promise<T>): Promise<'pending' | T> => Promise.race([p, new Promise<'pending'>((r) => setTimeout(() => r('pending'), 30))]);

describe('ModelQueue', () => {
  it('grants synchronously while a slot is free; beyond capacity requests wait and take released slots in order', async () => {
    const { q, req, counts } = setup({ maxConcurrentPerInstance: 2 });
    const a = q.admit(req());
    const b = q.admit(req());
    expect(a).not.toBeInstanceOf(Promise);
    expect(b).not.toBeInstanceOf(Promise);
    const c = q.admit(req()) as Promise<AdmissionTicket>;
    expect(c).toBeInstanceOf(Promise);
    expect(await settled(c)).toBe('pending');
    expect(q.snapshot()).toMatchObject({ capacity: 2, inFlight: 2, queued: 1 });
    (a as AdmissionTicket).release();
    (a as AdmissionTicket).release(); // once only
    const granted = await c;
    expect(q.snapshot()).toMatchObject({ inFlight: 2, queued: 0 });
    granted.release();
    (b as AdmissionTicket).release();
    expect(q.inFlight).toBe(0);
    expect(counts).toMatchObject({ admitted: 3, queued: 1 });
    const t = q.snapshot().tenants[0]!;
    expect(t).toMatchObject({ tenant: 'a', admitted: 3, queued: 0, inFlight: 0 });
  });

  it('with two replicas it admits its share of the capacity; when the other goes, waiters take the slots it returns', async () => {
    const share = new ReplicaShare();
    share.set(2, 0);
    const { q, req } = setup({ maxConcurrentPerInstance: 4 }, 1, share);
    const held = [q.admit(req()), q.admit(req())];
    expect(held.every((t) => !(t instanceof Promise))).toBe(true);
    const waiting = [q.admit(req()), q.admit(req())] as Array<Promise<AdmissionTicket>>;
    expect(await settled(waiting[0]!)).toBe('pending');
    expect(q.snapshot()).toMatchObject({ capacity: 4, replicaCapacity: 2, replicas: 2, inFlight: 2, queued: 2 });
    share.set(1, 0);
    q.drain();
    const granted = await Promise.all(waiting);
    expect(q.snapshot()).toMatchObject({ capacity: 4, replicaCapacity: 4, replicas: 1, inFlight: 4, queued: 0 });
    for (const t of [...held, ...granted]) (t as AdmissionTicket).release();
  });

  it('a full queue refuses with 429 MCP_ADMISSION_QUEUE_FULL and a Retry-After; a more urgent request displaces a less urgent one', async () => {
    const { q, req } = setup({ maxQueueSize: 1 });
    q.admit(req());
    const low = q.admit(req({ level: 3 })) as Promise<AdmissionTicket>;
    const full = await refusal(() => q.admit(req({ level: 3, tenant: 'b' })));
    expect(full.code).toBe('MCP_ADMISSION_QUEUE_FULL');
    expect(full.status).toBe(429);
    expect(full.details?.retryAfterMs).toBeGreaterThanOrEqual(1000);
    expect(full.mayHaveExecuted).toBe(false);
    const critical = q.admit(req({ level: 0 })) as Promise<AdmissionTicket>;
    const displaced = await refusal(() => low);
    expect(displaced.code).toBe('MCP_ADMISSION_QUEUE_FULL');
    expect(displaced.message).toMatch(/more urgent/);
    expect(await settled(critical)).toBe('pending');
  });

  it('a full queue makes room for a tenant under its share by refusing the newest request of the one over it (MCP_TENANT_OVER_SHARE)', async () => {
    const { q, req } = setup({ maxQueueSize: 3 });
    q.admit(req());
    const a = [q.admit(req()), q.admit(req()), q.admit(req())] as Array<Promise<AdmissionTicket>>;
    const b = q.admit(req({ tenant: 'b' })) as Promise<AdmissionTicket>;
    const e = await refusal(() => a[2]!);
    expect(e.code).toBe('MCP_TENANT_OVER_SHARE');
    expect(e.status).toBe(429);
    // The over-share tenant asking again is refused itself.
    const again = await refusal(() => q.admit(req()));
    expect(again.code).toBe('MCP_TENANT_OVER_SHARE');
    expect(await settled(b)).toBe('pending');
  });

  it('queue timeout: REJECT answers 503 MCP_QUEUE_TIMEOUT; a request may ask for a shorter timeout', async () => {
    const { q, req, counts } = setup({ queueTimeoutMs: 5000, timeoutAction: 'reject' });
    q.admit(req());
    const started = Date.now();
    const e = await refusal(() => q.admit(req({ queueTimeoutMs: 40 })));
    expect(e.code).toBe('MCP_QUEUE_TIMEOUT');
    expect(e.status).toBe(503);
    expect(Date.now() - started).toBeLessThan(3000);
    expect(counts.timeout).toBe(1);
    expect(q.snapshot().queued).toBe(0);
  });

  it('queue timeout: DELAY keeps the request, behind requests that have not timed out', async () => {
    const { q, req, counts } = setup({ queueTimeoutMs: 30, timeoutAction: 'delay' });
    const first = q.admit(req()) as AdmissionTicket;
    const delayed = q.admit(req({ level: 0 })) as Promise<AdmissionTicket>;
    await new Promise((r) => setTimeout(r, 80));
    expect(counts.delayed).toBe(1);
    const fresh = q.admit(req({ level: 3, queueTimeoutMs: 10_000 })) as Promise<AdmissionTicket>;
    const order: string[] = [];
    void delayed.then((t) => {
      order.push('delayed');
      t.release();
    });
    void fresh.then((t) => {
      order.push('fresh');
      t.release();
    });
    first.release();
    await Promise.all([delayed, fresh]);
    await new Promise((r) => setTimeout(r, 10));
    expect(order).toEqual(['fresh', 'delayed']);
  });

  it('deadline shedding: a request whose deadline falls before the expected wait and service is refused at once', async () => {
    const { q, req, counts } = setup({ maxConcurrentPerInstance: 1 });
    // Five served requests of ~20 ms teach the queue its service time.
    for (let i = 0; i < 5; i++) {
      const t = q.admit(req()) as AdmissionTicket;
      await new Promise((r) => setTimeout(r, 20));
      t.release();
    }
    const busy = q.admit(req()) as AdmissionTicket;
    const started = performance.now();
    const e = await refusal(() => q.admit(req({ deadline: Date.now() + 5 })));
    expect(performance.now() - started).toBeLessThan(5);
    expect(e.code).toBe('MCP_DEADLINE_UNMEETABLE');
    expect(e.details?.retryAfterMs).toBeGreaterThanOrEqual(1000);
    expect(counts.unmeetable).toBe(1);
    // A deadline far enough away waits.
    const ok = q.admit(req({ deadline: Date.now() + 10_000 })) as Promise<AdmissionTicket>;
    busy.release();
    (await ok).release();
  });

  it('leaves the queue when its signal aborts (the client went away or the deadline passed)', async () => {
    const { q, req, counts } = setup();
    q.admit(req());
    const ctl = new AbortController();
    const p = q.admit(req({ signal: ctl.signal }));
    ctl.abort(new McpError('MCP_CANCELLED'));
    expect((await refusal(() => p)).code).toBe('MCP_CANCELLED');
    expect(q.snapshot().queued).toBe(0);
    expect(counts.cancelled).toBe(1);
  });

  it('no capacity and no hold: admission steps aside (the router decides)', () => {
    const { q, req } = setup({}, 0);
    expect(q.admit(req())).toBe(PASS);
  });

  it('capacity follows the fleet: waiters go when an instance becomes ready (1 → 2), the first instance after zero counts (0 → 1)', async () => {
    const { q, req, fleet } = setup({ maxConcurrentPerInstance: 2 }, 0);
    expect(q.admit(req())).toBe(PASS); // at zero: the router's cold-start hold decides
    fleet.ready = 1; // the first instance: capacity 2, requests beyond it wait
    const first = [q.admit(req()), q.admit(req())] as AdmissionTicket[];
    const waiting = [q.admit(req()), q.admit(req()), q.admit(req())] as Array<Promise<AdmissionTicket>>;
    expect(q.snapshot()).toMatchObject({ capacity: 2, inFlight: 2, queued: 3 });
    fleet.ready = 2; // noticed by the poll, no release needed
    const [a, b] = await Promise.all([waiting[0]!, waiting[1]!]);
    expect(await settled(waiting[2]!)).toBe('pending');
    first[0]!.release();
    const c = await waiting[2]!;
    for (const t of [first[1]!, a!, b!, c]) t.release();
    expect(q.snapshot()).toMatchObject({ capacity: 4, inFlight: 0, queued: 0 });
  });

  it('capacity gone under waiters (the last instance went away): they step aside to the router, never an admission error', async () => {
    const { q, req, fleet, counts } = setup({ maxConcurrentPerInstance: 1 }, 1);
    const busy = q.admit(req()) as AdmissionTicket;
    const waiting = q.admit(req()) as Promise<AdmissionTicket>;
    fleet.ready = 0;
    expect(await waiting).toBe(PASS);
    expect(q.snapshot()).toMatchObject({ capacity: 0, queued: 0 });
    busy.release();
    expect(counts).toMatchObject({ timeout: 0, full: 0 });
  });

  it('closing the gateway answers waiters 503 MCP_SHUTTING_DOWN (never ran)', async () => {
    const { q, req, counts } = setup({ maxConcurrentPerInstance: 1 }, 1);
    const busy = q.admit(req()) as AdmissionTicket;
    const waiting = q.admit(req()) as Promise<AdmissionTicket>;
    q.close();
    const e = await refusal(() => waiting);
    expect(e).toMatchObject({ code: 'MCP_SHUTTING_DOWN', status: 503, mayHaveExecuted: false });
    expect(counts.shutdown).toBe(1);
    busy.release();
  });

  it('an unlimited model (maxConcurrentPerInstance 0) is idle: no counting at all', () => {
    const { q, fleet } = setup({ maxConcurrentPerInstance: 0 }, 0);
    expect(q.idle).toBe(true);
    fleet.ready = 1;
    expect(q.idle).toBe(true);
    expect(q.snapshot().capacity).toBeNull();
  });

  it('tenants beyond the table share `other`', () => {
    const { q, req } = setup({ maxConcurrentPerInstance: 10 });
    for (const t of ['a', 'b', 'c', 'd']) q.admit(req({ tenant: t }));
    expect(q.snapshot().tenants.map((t) => [t.tenant, t.inFlight])).toEqual([
      ['a', 1],
      ['b', 1],
      ['other', 2],
    ]);
  });
});
