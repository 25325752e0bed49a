/**
 * A closed-loop HTTP load generator for the overload test and bench/overload.ts, meant to run in its
 * own process (so the gateway's event loop is not shared with the load): `connections` keep-alive
 * connections each send one request at a time for `seconds`; every request's latency is measured from
 * the moment it was handed to its connection (a connection still waiting in the server's accept queue
 * counts), with its status and Retry-After.
 *
 *   node --import tsx test/support/overload-load.ts '<json LoadPlan>'   → prints one JSON LoadReport line
 *
 * Connections are spread over several loopback source addresses (127.0.0.2, .3, …) so that many
 * clients are not one address to the gateway's per-address socket cap.
 */
import { Client } from 'undici';

export interface LoadPhase {
  name: string;
  connections: number;
  seconds: number;
}

export interface LoadPlan {
  url: string;
  method: 'POST' | 'GET';
  headers: Record<string, string>;
  body?: string;
  phases: LoadPhase[];
  /** Loopback source addresses to spread connections over (default 4: 127.0.0.2–5). */
  sourceAddresses?: number;
}

export interface PhaseReport {
  name: string;
  connections: number;
  seconds: number;
  /** Answers with 2xx, per second of the phase. */
  okPerSecond: number;
  ok: number;
  /** 503 answers; withRetryAfter of them carried Retry-After. */
  rejected: number;
  rejectedWithRetryAfter: number;
  rejectedCodes: Record<string, number>;
  /** Other statuses, and transport errors (reset, refused). */
  otherStatus: Record<string, number>;
  errors: number;
  errorCodes: Record<string, number>;
  /** Latency of the 2xx answers, ms. */
  okMs: { p50: number; p99: number; max: number };
  /**
   * Latency of the 2xx answers sent on a connection the server had already accepted (not the first
   * request of a connection, which also waits for the server to accept it), ms.
   */
  okOnAcceptedMs: { p50: number; p99: number; max: number };
  /** Latency of each connection's first answer (connect, the kernel's accept queue, then the request), ms. */
  firstAnswerMs: { p50: number; p99: number; max: number };
  /** Latency of the 503 answers, ms. */
  rejectedMs: { p50: number; p99: number; max: number };
}

export interface LoadReport {
  phases: PhaseReport[];
}

function quantiles(sorted: number[]): { p50: number; p99: number; max: number } {
  if (sorted.length === 0) return { p50: 0, p99: 0, max: 0 };
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  const r = (x: number) => Math.round(x * 10) / 10;
  return { p50: r(at(0.5)), p99: r(at(0.99)), max: r(sorted[sorted.length - 1]!) };
}

async function runPhase(plan: LoadPlan, phase: LoadPhase): Promise<PhaseReport> {
  const url = new URL(plan.url);
  const sources = plan.sourceAddresses ?? 4;
  const okMs: number[] = [];
  const rejectedMs: number[] = [];
  const okOnAcceptedMs: number[] = [];
  const firstAnswerMs: number[] = [];
  const report: PhaseReport = {
    name: phase.name,
    connections: phase.connections,
    seconds: phase.seconds,
    okPerSecond: 0,
    ok: 0,
    rejected: 0,
    rejectedWithRetryAfter: 0,
    rejectedCodes: {},
    otherStatus: {},
    errors: 0,
    errorCodes: {},
    okMs: quantiles([]),
    okOnAcceptedMs: quantiles([]),
    firstAnswerMs: quantiles([]),
    rejectedMs: quantiles([]),
  };
  const clients = Array.from(
    { length: phase.connections },
    (_, i) =>
      new Client(url.origin, {
        pipelining: 1,
        localAddress: `127.0.0.${2 + (i % sources)}`,
        headersTimeout: 60_000,
        bodyTimeout: 60_000,
        keepAliveTimeout: 60_000,
      }),
  );
  const started = performance.now();
  const until = started + phase.seconds * 1000;
  await Promise.all(
    clients.map(async (client) => {
      let answered = false;
      while (performance.now() < until) {
        const t0 = performance.now();
        try {
          const res = await client.request({ path: url.pathname + url.search, method: plan.method, headers: plan.headers, body: plan.body });
          const text = await res.body.text();
          const ms = performance.now() - t0;
          if (t0 > until) break;
          if (!answered) firstAnswerMs.push(ms);
          if (res.statusCode >= 200 && res.statusCode < 300) {
            report.ok++;
            okMs.push(ms);
            if (answered) okOnAcceptedMs.push(ms);
          } else if (res.statusCode === 503) {
            report.rejected++;
            rejectedMs.push(ms);
            if (res.headers['retry-after']) report.rejectedWithRetryAfter++;
            const code = /"(MCP_[A-Z_]+)"/.exec(text)?.[1] ?? 'unknown';
            report.rejectedCodes[code] = (report.rejectedCodes[code] ?? 0) + 1;
          } else {
            report.otherStatus[res.statusCode] = (report.otherStatus[res.statusCode] ?? 0) + 1;
          }
          answered = true;
        } catch (err) {
          report.errors++;
          const code = (err as { code?: string }).code ?? (err as Error).name;
          report.errorCodes[code] = (report.errorCodes[code] ?? 0) + 1;
          answered = false;
          await new Promise((r) => setTimeout(r, 10));
        }
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  await Promise.all(clients.map((c) => c.destroy().catch(() => undefined)));
  report.okPerSecond = Math.round((report.ok / elapsed) * 10) / 10;
  report.okMs = quantiles(okMs.sort((a, b) => a - b));
  report.okOnAcceptedMs = quantiles(okOnAcceptedMs.sort((a, b) => a - b));
  report.firstAnswerMs = quantiles(firstAnswerMs.sort((a, b) => a - b));
  report.rejectedMs = quantiles(rejectedMs.sort((a, b) => a - b));
  return report;
}

export async function runLoad(plan: LoadPlan): Promise<LoadReport> {
  const phases: PhaseReport[] = [];
  for (const phase of plan.phases) phases.push(await runPhase(plan, phase));
  return { phases };
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop()!)) {
  const plan = JSON.parse(process.argv[2]!) as LoadPlan;
  const report = await runLoad(plan);
  process.stdout.write(`${JSON.stringify(report)}\n`);
}
