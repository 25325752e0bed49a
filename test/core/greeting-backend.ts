/**
 * Test-only backend (loaded by path, like a third-party plugin) that uses a capability kind the
 * gateway does not know: it answers every prompt with the `greeter` plugin's greeting, which it gets
 * from the host through `dependsOn` and `ctx.get`, typed by the example package's augmentation.
 */
import { z } from 'zod';
import { definePlugin, type InferenceInput } from 'capibara-mcp';
import type { Greeter } from '../../examples/capibara-plugin-greeter/index.js';

export default definePlugin({
  name: 'greeting',
  kind: 'backend',
  apiVersion: '^1.0.0',
  options: z.strictObject({}),
  dependsOn: ['greeter'],
  setup(ctx) {
    const greeter: Greeter = ctx.get('greeter', 'greeter');
    const answer = (input: InferenceInput) => greeter.greet(input.task === 'generate' ? input.prompt : '');
    return {
      async load(spec) {
        return {
          runtime: 'greeting',
          device: spec.device ?? 'cpu',
          tasks: ['generate'],
          async infer(input) {
            return { text: answer(input), finishReason: 'stop' };
          },
          async health() {
            return { ok: true };
          },
          async unload() {},
        };
      },
    };
  },
});
