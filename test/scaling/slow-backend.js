// @ts-check
// A backend for worker processes in the auto-scaling tests: answers `<prefix><prompt>` after `delayMs`,
// so requests stay in flight long enough to be counted.
import { z } from 'zod';

const options = z.strictObject({ prefix: z.string().default(''), delayMs: z.number().int().min(0).max(60_000).default(200) });

/** @type {import('capibara-mcp').PluginDefinition<'backend', z.infer<typeof options>>} */
export default {
  name: 'slow',
  kind: 'backend',
  apiVersion: '^1.0.0',
  description: 'Answers the prompt after a delay (tests).',
  options,
  setup(_ctx, opts) {
    return {
      async load(spec) {
        if (spec.options.failLoad) throw new Error('this instance is configured to fail its load');
        return {
          runtime: 'slow',
          device: 'cpu',
          tasks: ['generate'],
          async infer(input) {
            await new Promise((r) => setTimeout(r, opts.delayMs));
            return { text: `${opts.prefix}${input.task === 'generate' ? input.prompt : ''}`, finishReason: 'stop' };
          },
          async health() {
            return { ok: true };
          },
          async unload() {},
        };
      },
    };
  },
};
