/**
 * Cost of one routing decision (balancer pick) per first-party balancer, for 2, 16 and
 * 128 candidate instances. Run: `npx tsx --conditions=capibara-source bench/routing-decision.ts` (options: --quick).
 *
 * Each iteration does what the router does per request: one pick() over the live
 * candidates (outstanding counts change as picks happen and requests finish), plus one
 * observe() for the balancers that learn. Half of the picks carry an affinity key (64 keys),
 * so consistent-hash measures both its ring walk and its least-outstanding fallback.
 * Reported: ns per decision (median of 5 runs) with `explain` on (default: scores returned)
 * and off.
 */
import type { Balancer, BalanceContext, BalancerCandidate } from '../src/plugin/contract.ts';
import { createRoundRobin } from '../plugins/balancer-round-robin/index.ts';
import { createWeightedRandom } from '../plugins/balancer-weighted-random/index.ts';
import { createLeastOutstanding } from '../plugins/balancer-least-outstanding/index.ts';
import { createP2cEwma } from '../plugins/balancer-p2c-ewma/index.ts';
import { createConsistentHash } from '../plugins/balancer-consistent-hash/index.ts';
import { chooseVariant } from '../src/routing/traffic-split.ts';

const quick = process.argv.includes('--quick');
const ITER = quick ? 50_000 : 300_000;
const RUNS = 5;
const SIZES = [2, 16, 128];

type Factory = (explain: boolean) => Balancer;
const balancers: Array<[string, Factory]> = [
  ['round-robin', (explain) => createRoundRobin({ explain })],
  ['weighted-random', (explain) => createWeightedRandom({ explain })],
  ['least-outstanding', (explain) => createLeastOutstanding({ explain })],
  ['p2c-ewma', (explain) => createP2cEwma({ explain })],
  ['consistent-hash', (explain) => createConsistentHash({ explain })],
];

interface Cand extends BalancerCandidate {
  outstanding: number;
  weight: number;
}

let sink = 0;

function run(make: Factory, explain: boolean, n: number): number {
  const b = make(explain);
  const cands: Cand[] = Array.from({ length: n }, (_, i) => ({ id: `model-a/instance-${i}`, weight: 1 + (i % 3), outstanding: i % 4 }));
  const contexts: BalanceContext[] = Array.from({ length: 128 }, (_, i) => (i % 2 ? { affinityKey: `principal-${i % 64}` } : {}));
  const latencies = Array.from({ length: n }, (_, i) => 20 + (i % 7) * 5);
  const step = (k: number) => {
    const pick = b.pick(cands, contexts[k & 127]!);
    const c = pick.chosen;
    // keep outstanding moving like real traffic: the chosen one gets a request, another finishes
    c.outstanding++;
    const done = cands[k % n]!;
    if (done.outstanding > 0) done.outstanding--;
    b.observe?.(c.id, { ok: (k & 63) !== 0, latencyMs: latencies[k % n]! });
    sink += pick.scores ? 1 : 0;
  };
  for (let k = 0; k < ITER / 5; k++) step(k); // warm-up (JIT)
  const times: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    const t0 = process.hrtime.bigint();
    for (let k = 0; k < ITER; k++) step(k);
    times.push(Number(process.hrtime.bigint() - t0) / ITER);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(RUNS / 2)]!;
}

function fmt(ns: number): string {
  return ns < 1000 ? `${ns.toFixed(0)} ns` : `${(ns / 1000).toFixed(2)} µs`;
}

console.log(`# Routing decision cost (pick + observe), node ${process.version}, ${ITER.toLocaleString('en')} ops × ${RUNS} runs, median\n`);
console.log(`| balancer | ${SIZES.map((n) => `${n} inst.`).join(' | ')} | ${SIZES.map((n) => `${n} inst., explain off`).join(' | ')} |`);
console.log(`|---|${SIZES.map(() => '---:').join('|')}|${SIZES.map(() => '---:').join('|')}|`);
for (const [name, make] of balancers) {
  const on = SIZES.map((n) => fmt(run(make, true, n)));
  const off = SIZES.map((n) => fmt(run(make, false, n)));
  console.log(`| ${name} | ${on.join(' | ')} | ${off.join(' | ')} |`);
}

// traffic split (per request before the balancer when a model has a split)
{
  const variants = [
    { name: 'stable', weight: 90, ready: true },
    { name: 'canary', weight: 10, ready: true },
  ];
  const keys = Array.from({ length: 64 }, (_, i) => `principal-${i}`);
  for (let k = 0; k < ITER / 5; k++) sink += chooseVariant(variants, keys[k & 63])!.length;
  const t0 = process.hrtime.bigint();
  for (let k = 0; k < ITER; k++) sink += chooseVariant(variants, k & 1 ? keys[k & 63] : undefined)!.length;
  console.log(`\ntraffic split chooseVariant (2 variants, half sticky): ${fmt(Number(process.hrtime.bigint() - t0) / ITER)}`);
}
if (sink === -1) console.log(sink);
