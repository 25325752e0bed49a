/**
 * Autoscaler reaction time: a version at 1 instance gets a load step (1 → 6 closed-loop clients of a
 * 250 ms backend, target 2 ongoing per instance); measured from the step to the first scale-up decision
 * and to a new instance serving. Rows, interleaved per round: target-ongoing and kpa on the `instances`
 * actuator (an instance in the gateway process), and target-ongoing on the `local-process` actuator (a
 * real `capibara-mcp worker` process started per scale-up). Medians over ROUNDS (default 3).
 *
 *   npx tsx --conditions=capibara-source bench/autoscale.ts
 */
import { fileURLToPath } from 'node:url';
import { startTestGateway, type TestGateway } from '../src/testing/gateway.ts';

const SLOW = fileURLToPath(new URL('../test/scaling/slow-backend.js', import.meta.url));
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const INTERVAL_MS = 200;

interface Row {
  name: string;
  scaler: string;
  actuator: string;
  actuatorOptions?: Record<string, unknown>;
}

const ROWS: Row[] = [
  { name: 'target-ongoing, instances (in-process)', scaler: 'ongoing', actuator: 'instances', actuatorOptions: { backend: 'slow' } },
  { name: 'kpa, instances (in-process)', scaler: 'kpa-fast', actuator: 'instances', actuatorOptions: { backend: 'slow' } },
  { name: 'target-ongoing, local-process (worker process)', scaler: 'ongoing', actuator: 'local' },
];

async function main(): Promise<void> {
  const gw = await startTestGateway({
    log: { level: 'warn' },
    plugins: [
      { use: SLOW, options: { delayMs: 250 } },
      { use: 'target-ongoing', name: 'ongoing', options: { targetOngoingRequests: 2, lookbackMs: 1_000, upscaleDelayMs: 600, downscaleDelayMs: 1_000 } },
      { use: 'kpa', name: 'kpa-fast', options: { targetConcurrency: 2, targetUtilization: 1, stableWindowMs: 6_000, panicThreshold: 2, maxScaleDownRate: 10 } },
    ],
    scaling: {
      intervalMs: INTERVAL_MS,
      actuators: [
        {
          name: 'local',
          type: 'local-process',
          options: {
            namePrefix: 'bench',
            maxProcesses: 16,
            workerConfig: {
              defaultPlugins: false,
              plugins: [{ use: SLOW, options: { delayMs: 250 } }],
              log: { level: 'warn' },
              worker: { heartbeatIntervalMs: 300, drainMs: 2_000, models: [{ id: 'MODEL', version: 'v1', backend: 'slow', task: 'generate' }] },
            },
          },
        },
      ],
    },
  });
  const results = new Map<string, Array<{ decisionMs: number; servingMs: number }>>();
  try {
    for (let round = 0; round < ROUNDS; round++) {
      for (const [i, row] of ROWS.entries()) {
        const model = `m${round}-${i}`;
        const r = await measure(gw, model, row);
        (results.get(row.name) ?? results.set(row.name, []).get(row.name)!).push(r);
        console.error(`round ${round + 1} ${row.name}: decision ${r.decisionMs} ms, serving ${r.servingMs} ms`);
      }
    }
  } finally {
    await gw.close();
  }
  console.log(`\n| scaler, actuator | step → scale-up decision (median ms) | step → new instance serving (median ms) | rounds |`);
  console.log(`|---|---:|---:|---:|`);
  for (const row of ROWS) {
    const r = results.get(row.name)!;
    console.log(`| ${row.name} | ${median(r.map((x) => x.decisionMs))} | ${median(r.map((x) => x.servingMs))} | ${r.length} |`);
  }
}

async function measure(gw: TestGateway, model: string, row: Row): Promise<{ decisionMs: number; servingMs: number }> {
  const ok = (r: { errors?: Array<{ message: string }> }, what: string) => {
    if (r.errors?.length) throw new Error(`${what}: ${r.errors[0]!.message}`);
  };
  ok(
    await gw.gql(`mutation($id: String!) { registerModel(input: { id: $id, task: GENERATE, versions: [{ version: "v1" }] }) { id } }`, { id: model }),
    'registerModel',
  );
  if (row.actuator === 'local') {
    // the worker config names the model: this row's processes serve `model` (the actuator holds this object)
    const a = gw.config.scaling.actuators[0]!;
    const wc = a.options.workerConfig as { worker: { models: Array<{ id: string }> } };
    wc.worker.models[0]!.id = model;
  }
  const policy = {
    scaler: row.scaler,
    minInstances: 1,
    maxInstances: 3,
    scaleDownStabilizationMs: 1_000,
    actuator: { name: row.actuator, options: row.actuatorOptions ?? {} },
  };
  ok(
    await gw.gql(`mutation($m: ID!, $p: ScalingPolicyInput!) { setScalingPolicy(model: $m, policy: $p) { model } }`, { m: model, p: policy }),
    'setScalingPolicy',
  );
  const ready = async () => {
    const r = await gw.gql<{ model: { versions: Array<{ instances: Array<{ status: string }> }> } }>(
      `query($id: ID!) { model(id: $id) { versions { instances { status } } } }`,
      {
        id: model,
      },
    );
    return r.data!.model.versions.flatMap((v) => v.instances).filter((i) => i.status === 'READY').length;
  };
  // the minimum (1) comes first
  while ((await ready()) < 1) await sleep(50);
  await sleep(1_500);
  const step = Date.now();
  let stop = false;
  const client = async () => {
    while (!stop) {
      const r = await gw.gql(`mutation($m: ID!) { infer(model: $m, input: { prompt: "x" }, timeoutMs: 30000) { text } }`, { m: model });
      if (r.errors?.length && process.env.DEBUG) console.error(r.errors[0]);
    }
  };
  const clients = Array.from({ length: 6 }, client);
  let decisionMs = -1;
  let servingMs = -1;
  while ((servingMs < 0 || decisionMs < 0) && Date.now() - step < 60_000) {
    if (decisionMs < 0) {
      const d = await gw.gql<{ scalingDecisions: Array<{ toInstances: number; fromInstances: number; at: string }> }>(
        `query($m: ID!) { scalingDecisions(model: $m, last: 10) { fromInstances toInstances at } }`,
        { m: model },
      );
      const up = d.data!.scalingDecisions.find((x) => x.fromInstances >= 1 && x.toInstances > x.fromInstances);
      if (up) decisionMs = new Date(up.at).getTime() - step;
    }
    if (servingMs < 0 && (await ready()) > 1) servingMs = Date.now() - step;
    await sleep(25);
  }
  stop = true;
  await Promise.all(clients);
  await gw.gql(`mutation($m: ID!) { removeScalingPolicy(model: $m, version: "v1") }`, { m: model });
  return { decisionMs, servingMs };
}

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

await main();
