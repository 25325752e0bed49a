import { z } from 'zod';

/** `security.upstream`: where upstream calls (model servers, workers, remote model files) may connect. */
const upstreamSecuritySchema = z
  .strictObject({
    /** Host names accepted in strict mode: exact (`vllm.internal`) or a suffix (`*.models.internal`). */
    allowHosts: z.array(z.string().min(1).max(253)).max(1000).default([]),
    /** Address ranges accepted in strict mode (`10.0.0.0/8`, `fd00::/8`, a single address). */
    allowCidrs: z.array(z.string().min(1).max(64)).max(1000).default([]),
  })
  .prefault({});

/** `security.secrets`: secret values in instance options (apiKey, token, authorization headers…). */
const secretsSecuritySchema = z
  .strictObject({
    /** Folders `file:` secret references given through the API may read from (the config file may name any file). */
    fileRoots: z.array(z.string().min(1)).max(64).default([]),
    /** Extra option names (case-insensitive, any depth) treated as secrets besides the built-in list. */
    extraKeys: z.array(z.string().min(1).max(100)).max(100).default([]),
  })
  .prefault({});

/** `security`: how strict the gateway is about what it talks to and what it reveals. */
export const securityConfigSchema = z
  .strictObject({
    /** strict: production mode (only allow-listed upstreams, no introspection or field suggestions). */
    mode: z.enum(['development', 'strict']).default('development'),
    // ── upstream safety (address policy and secrets) ──
    upstream: upstreamSecuritySchema,
    secrets: secretsSecuritySchema,
  })
  .prefault({});
export type SecurityConfig = z.output<typeof securityConfigSchema>;
