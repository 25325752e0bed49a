import { z } from 'zod';

/** `security`: how strict the gateway is about what it talks to and what it reveals. */
export const securityConfigSchema = z
  .strictObject({
    /** strict: production mode (only allow-listed upstreams, no introspection or field suggestions). */
    mode: z.enum(['development', 'strict']).default('development'),
  })
  .prefault({});
export type SecurityConfig = z.output<typeof securityConfigSchema>;
