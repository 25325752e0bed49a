/**
 * Memory accounting around loads and unloads. The real tfjs backend in a real gateway: 100
 * load/unload cycles of the demo model end within 5% of the starting device memory and raise no
 * unreleased-memory metric; an unload that keeps memory raises the metric and a warning.
 */
import pino from 'pino';
import { Registry, type Counter } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryAccounting, usageOf } from '../../src/resources/memory-accounting.ts';
import { startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';

const MiB = 2 ** 20;

describe('memory accounting: 100 load/unload cycles of the tfjs demo model', () => {
  let gw: TestGateway;

  beforeAll(async () => {
    gw = await startTestGateway({ demo: { enabled: true } }); // capibara-mini on tfjs, instance capibara-mini-local
  }, 60_000);

  afterAll(async () => {
    await gw?.close();
  });

  it('ends within 5% of the starting memory, with nothing reported unreleased', async () => {
    const { admin, plugins, metricsRegistry } = gw.services;
    const used = async () => usageOf(await plugins.get('backend', 'tfjs').devices!()).get('cpu')!;
    await admin.unloadInstance('capibara-mini-local');
    const start = await used();
    const rss = process.memoryUsage().rss;
    let loadedBytes = 0;
    for (let i = 0; i < 100; i++) {
      await admin.loadInstance('capibara-mini-local');
      if (i === 0) loadedBytes = (await used()) - start;
      if (i % 10 === 0) {
        const r = await gw.gql<{ infer: { text: string } }>(
          `mutation { infer(model: "capibara-mini", input: { prompt: "The capybara", parameters: { maxTokens: 4, seed: 1 } }) { text } }`,
        );
        expect(r.errors).toBeUndefined();
      }
      await admin.unloadInstance('capibara-mini-local');
    }
    const end = await used();
    expect(loadedBytes).toBeGreaterThan(0); // the device figure does move with the model: the check is not vacuous
    expect(Math.abs(end - start)).toBeLessThanOrEqual(0.05 * Math.max(start, loadedBytes));
    const unreleased = metricsRegistry.getSingleMetric('mcp_unload_unreleased_bytes_total') as Counter | undefined;
    expect(unreleased).toBeDefined();
    expect((await unreleased!.get()).values.reduce((s, v) => s + v.value, 0)).toBe(0);
    // the process as a whole does not grow by a model per cycle either (100 cycles × the model would be far more)
    expect(process.memoryUsage().rss - rss).toBeLessThan(Math.max(100 * loadedBytes * 0.25, 64 * MiB));
  }, 120_000);

  it('an unload that keeps the model raises mcp_unload_unreleased_bytes_total by what it kept', async () => {
    const { admin, instances, metricsRegistry } = gw.services;
    await admin.loadInstance('capibara-mini-local');
    const h = instances.handle('capibara-mini-local')!;
    h.loaded!.unload = async () => {}; // a backend that forgets to dispose its model
    await admin.unloadInstance('capibara-mini-local');
    const values = (await (metricsRegistry.getSingleMetric('mcp_unload_unreleased_bytes_total') as Counter).get()).values;
    expect(values).toEqual([expect.objectContaining({ labels: { worker: 'embedded', device: 'cpu' } })]);
    expect(values[0]!.value).toBeGreaterThan(0);
  }, 60_000);
});

describe('MemoryAccounting', () => {
  it('raises the metric and a warning when an unload does not give its memory back', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino({ level: 'warn' }, { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) });
    const metrics = new Registry();
    const acc = new MemoryAccounting({ logger, metrics });
    const m = (cpu: number) => new Map([['cpu', cpu * MiB]]);
    expect(acc.recordLoad('w1', 'a', m(100), m(300))).toBe(200 * MiB);
    expect(acc.recordUnload('w1', 'a', m(300), m(101))).toMatchObject({ unreleased: 0 }); // 1 MiB: noise
    acc.recordLoad('w1', 'b', m(100), m(300));
    expect(acc.recordUnload('w1', 'b', m(300), m(250))).toEqual({ held: 200 * MiB, released: 50 * MiB, unreleased: 150 * MiB });
    const counter = (await metrics.getSingleMetric('mcp_unload_unreleased_bytes_total')!.get()).values;
    expect(counter).toEqual([expect.objectContaining({ labels: { worker: 'w1', device: 'cpu' }, value: 150 * MiB })]);
    const gauge = (await metrics.getSingleMetric('mcp_memory_leak_bytes')!.get()).values;
    expect(gauge[0]?.value).toBe(150 * MiB);
    expect(lines.some((l) => l.level === 40 && l.instance === 'b' && l.unreleasedBytes === 150 * MiB)).toBe(true);
    // two loads at once see each other's growth: neither is measured, so their unloads are not checked
    const t1 = acc.begin('w2');
    const t2 = acc.begin('w2');
    expect(acc.recordLoad('w2', 'x', m(0), m(200), t1)).toBeUndefined();
    expect(acc.recordLoad('w2', 'y', m(100), m(200), t2)).toBeUndefined();
    expect(acc.recordUnload('w2', 'x', m(200), m(100), acc.begin('w2')).unreleased).toBe(0);
    // alone again: measured
    expect(acc.recordLoad('w2', 'z', m(100), m(150), acc.begin('w2'))).toBe(50 * MiB);
    acc.forgetWorker('w1');
    expect((await metrics.getSingleMetric('mcp_memory_leak_bytes')!.get()).values).toEqual([]);
  });
});
