import { describe, expect, it } from 'vitest';
import { configSchema } from './config/schema.ts';
import { nodeTuningFlags } from './node-tuning.ts';

describe('V8 settings of the CLI process (config.node)', () => {
  it('asks V8 for a 60% heap growing factor by default; 0 leaves V8 its own', () => {
    const node = configSchema.parse({}).node;
    expect(node).toEqual({ heapGrowingPercent: 60 });
    expect(nodeTuningFlags(node, [])).toEqual(['--heap-growing-percent=60']);
    expect(nodeTuningFlags({ heapGrowingPercent: 0 }, [])).toEqual([]);
  });

  it('leaves a flag node was started with alone (command line or NODE_OPTIONS, either spelling)', () => {
    expect(nodeTuningFlags({ heapGrowingPercent: 60 }, ['--heap-growing-percent=200'])).toEqual([]);
    expect(nodeTuningFlags({ heapGrowingPercent: 60 }, ['--max-old-space-size=512', '--heap_growing_percent=10'])).toEqual([]);
    expect(nodeTuningFlags({ heapGrowingPercent: 60 }, ['--max-old-space-size=512'])).toEqual(['--heap-growing-percent=60']);
  });

  it('rejects values V8 would not take, naming the key', () => {
    const r = configSchema.safeParse({ node: { heapGrowingPercent: -5 } });
    expect(r.success).toBe(false);
    expect(JSON.stringify(r.error?.issues[0]?.path)).toBe('["node","heapGrowingPercent"]');
    expect(configSchema.safeParse({ node: { heapGrowingPercent: 2.5 } }).success).toBe(false);
  });
});
