// A third-party plugin of a kind the gateway does not know: `greeter`. index.d.ts adds the kind to
// capibara-mcp's Capabilities, so plugins that list this one in `dependsOn` get a typed Greeter from
// `ctx.get('greeter', name)`.
import { z } from 'zod';
import { definePlugin } from 'capibara-mcp';

const options = z.strictObject({
  /** Word put before the name. */
  greeting: z.string().min(1).default('Hello'),
  /** Text put after the name. */
  punctuation: z.string().default('!'),
});

export default definePlugin({
  name: 'greeter',
  kind: 'greeter',
  apiVersion: '^1.0.0',
  description: 'Greets people (example of a capability kind added by a package).',
  options,
  setup(ctx, opts) {
    ctx.logger.debug({ greeting: opts.greeting }, 'greeter ready');
    return { greet: (name) => `${opts.greeting}, ${name}${opts.punctuation}` };
  },
});
