/**
 * Evaluation time of 1,000 alert rules per tick, by rule kind, side by side in one run (interleaved,
 * medians). Each rule reads 4 series (one per model) from an in-memory MetricSource holding 6 h of
 * 10 s samples per series (what the metrics history keeps at fine resolution).
 *
 *   npx tsx bench/alert-eval.ts                      # PGlite in memory; BENCH_TICKS (default 15) per kind
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test npx tsx bench/alert-eval.ts   # PostgreSQL too
 *
 * compute = range() + the rule's evaluation for every rule (no database);
 * tick    = AlertEngine.tick(): rules and alert states read from the database, evaluation, changes written
 *           (steady state: the alerts that fire did so in the warm-up tick, so nothing changes).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { AlertEngine } from '../src/alerts/engine.ts';
import { evaluateRule } from '../src/alerts/evaluate.ts';
import { alertEvaluationSchema, alertRuleSchema, ruleWindow, type AlertRule } from '../src/alerts/rules.ts';
import { openDatabase, type Database } from '../src/db/client.ts';
import { createTestDatabase } from '../src/testing/gateway.ts';
import type { MetricPoint, MetricSelector, MetricSeries, MetricSource } from '../src/monitoring/metric-source.ts';

const RULES = 1_000;
const TICKS = Number(process.env.BENCH_TICKS ?? 15);
const STEP = 10_000;
const HISTORY = (6 * 3_600_000) / STEP;
const MODELS = ['chat', 'embed', 'classify', 'vision'];
const METRICS = 50;

class ArraySource implements MetricSource {
  private readonly data = new Map<string, MetricSeries[]>();
  constructor(now: number) {
    let seed = 1;
    const rnd = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
    for (let m = 0; m < METRICS; m++) {
      const list: MetricSeries[] = MODELS.map((model) => {
        const points: MetricPoint[] = [];
        for (let i = HISTORY; i >= 0; i--) points.push({ at: now - i * STEP, value: m % 2 === 0 ? 0.0005 + rnd() * 0.0002 : 200 + 20 * rnd() });
        return { metric: `m${m}`, labels: { model }, points };
      });
      this.data.set(`m${m}`, list);
    }
  }
  names() {
    return [...this.data.keys()];
  }
  range(sel: MetricSelector, windowMs: number, stepMs: number): MetricSeries[] {
    const n = Math.floor(windowMs / stepMs) + 1;
    const every = Math.max(1, Math.round(stepMs / STEP));
    return (this.data.get(sel.metric) ?? []).map((s) => {
      const points = every === 1 ? s.points.slice(-n) : s.points.slice(-n * every).filter((_, i) => i % every === 0);
      return { metric: s.metric, labels: s.labels, points };
    });
  }
  onTick() {
    return () => {};
  }
}

function rules(kind: string): AlertRule[] {
  return Array.from({ length: RULES }, (_, i) => {
    const k = kind === 'mixed' ? ['threshold', 'rate', 'burnRate', 'anomaly'][i % 4]! : kind;
    const metric = `m${k === 'burnRate' ? (i % 25) * 2 : (i % 25) * 2 + 1}`;
    const base = { name: `r${i}`, metric, severity: 'warning' };
    if (k === 'threshold') return alertRuleSchema.parse({ ...base, kind: k, op: '>', value: i % 10 === 0 ? 100 : 1000, windowMs: 60_000, forMs: 60_000 });
    if (k === 'rate') return alertRuleSchema.parse({ ...base, kind: k, op: '>', value: 1, windowMs: 300_000 });
    if (k === 'burnRate') return alertRuleSchema.parse({ ...base, kind: k, objective: 0.999 });
    return alertRuleSchema.parse({ ...base, kind: 'anomaly', method: 'ewma', trainingMs: 3_600_000 });
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const KINDS = ['threshold', 'rate', 'burnRate', 'anomaly', 'mixed'];

async function run(label: string, database: Database): Promise<void> {
  const now = Date.now();
  const source = new ArraySource(now);
  const evaluation = alertEvaluationSchema.parse({ intervalMs: STEP, resendFiringMs: 0, maxRules: 10_000 });
  const logger = pino({ level: 'silent' });
  const compute: Record<string, number[]> = {};
  const tick: Record<string, number[]> = {};
  const engines: Record<string, AlertEngine> = {};
  const sets: Record<string, AlertRule[]> = {};
  for (const kind of KINDS) sets[kind] = rules(kind);
  for (let t = 0; t < TICKS; t++) {
    for (const kind of KINDS) {
      const rs = sets[kind]!;
      let s = performance.now();
      for (const r of rs) {
        const w = ruleWindow(r, evaluation.intervalMs);
        evaluateRule(r, source.range({ metric: r.metric, labels: r.match }, w.windowMs, w.stepMs), now);
      }
      (compute[kind] ??= []).push(performance.now() - s);
      // A fresh engine per kind and round (rules synced, states cleared), warmed by one tick, then timed.
      {
        await database.db.execute('truncate alert_instances, alert_transitions, alert_outbox, alert_leases, alert_rules' as never);
        engines[kind] = new AlertEngine({
          database,
          source,
          notifier: { notify() {}, idle: async () => {} },
          evaluation,
          rules: rs,
          logger,
          holder: `bench-${kind}`,
        });
        await engines[kind].start();
        await engines[kind].tick(now);
      }
      s = performance.now();
      await engines[kind].tick(now);
      (tick[kind] ??= []).push(performance.now() - s);
      await engines[kind].close();
      delete engines[kind];
    }
  }
  console.log(`\n${label}: 1,000 rules × 4 series, ${TICKS} ticks per kind, medians (ms)`);
  console.log('| rules | compute ms | tick ms (with storage) |');
  console.log('|---|---:|---:|');
  for (const kind of KINDS) console.log(`| ${kind} | ${median(compute[kind]!).toFixed(1)} | ${median(tick[kind]!).toFixed(1)} |`);
}

const dir = mkdtempSync(join(tmpdir(), 'mcp-alert-bench-'));
const lite = await openDatabase({ dataDir: dir, inMemory: true });
await lite.migrate();
await run('PGlite (in memory)', lite);
await lite.close();
rmSync(dir, { recursive: true, force: true });
if (process.env.DATABASE_URL) {
  const t = await createTestDatabase();
  const db = await openDatabase({ url: t.url, dataDir: '/tmp' });
  await db.migrate();
  await run('PostgreSQL (loopback)', db);
  await db.close();
  await t.drop();
}
