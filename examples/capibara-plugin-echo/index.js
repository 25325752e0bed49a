// @ts-check
// A third-party plugin, written as its own npm package. The gateway loads it by path or package
// name from the config (`plugins: [{ use: ./examples/capibara-plugin-echo, options: {...} }]`).
import { McpError } from 'capibara-mcp';
import { z } from 'zod';

const options = z.strictObject({
  /** Text put before every answer. */
  prefix: z.string().default(''),
  /** Delay between streamed tokens, ms. */
  tokenDelayMs: z.number().int().min(0).max(10_000).default(0),
});

/** @param {import('capibara-mcp').InferenceInput} input */
function promptOf(input) {
  if (input.task === 'chat') return input.messages.map((m) => m.content).join('\n');
  return input.task === 'generate' ? input.prompt : '';
}

/** @type {import('capibara-mcp').PluginDefinition<'backend', z.infer<typeof options>>} */
const plugin = {
  name: 'echo',
  kind: 'backend',
  apiVersion: '^1.0.0',
  description: 'Echoes the prompt back (example third-party plugin).',
  options,
  dependsOn: [],
  setup(ctx, opts) {
    ctx.logger.debug({ prefix: opts.prefix }, 'echo backend ready');
    return {
      async load(spec) {
        let loaded = true;
        const answer = (/** @type {import('capibara-mcp').InferenceInput} */ input) => `${opts.prefix}${promptOf(input)}`;
        /** Refuses before anything runs: after unload (safe to retry elsewhere), or a task it does not serve. */
        const check = (/** @type {import('capibara-mcp').InferenceInput} */ input) => {
          if (!loaded) throw new McpError('MCP_SHUTTING_DOWN', `echo instance ${spec.id} was unloaded`, { retryable: true, mayHaveExecuted: false });
          if (input.task !== 'generate' && input.task !== 'chat') {
            throw new McpError('MCP_UNSUPPORTED_PARAMETER', `task '${input.task}' is not served by the echo backend (tasks: generate, chat)`, {
              details: { parameter: 'task', task: input.task },
            });
          }
        };
        const usage = (/** @type {string} */ p, /** @type {string} */ a) => ({
          promptTokens: p.split(/\s+/).filter(Boolean).length,
          completionTokens: a.split(/\s+/).filter(Boolean).length,
          totalTokens: p.split(/\s+/).filter(Boolean).length + a.split(/\s+/).filter(Boolean).length,
        });
        return {
          runtime: 'echo',
          device: spec.device ?? 'cpu',
          tasks: ['generate', 'chat'],
          async infer(input) {
            check(input);
            const text = answer(input);
            return { text, finishReason: 'stop', usage: usage(promptOf(input), text) };
          },
          async *stream(input, call) {
            check(input);
            const text = answer(input);
            const words = text.split(/(?<=\s)/);
            for (const w of words) {
              if (opts.tokenDelayMs) await new Promise((r) => setTimeout(r, opts.tokenDelayMs));
              // A stopped stream says so in its last chunk, rather than ending as if complete.
              if (call.signal.aborted) {
                yield { text: '', finishReason: 'cancelled' };
                return;
              }
              yield { text: w };
            }
            yield { text: '', finishReason: 'stop', usage: usage(promptOf(input), text) };
          },
          async health() {
            return { ok: loaded };
          },
          async unload() {
            loaded = false;
          },
        };
      },
    };
  },
};

export default plugin;
