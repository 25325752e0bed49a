import { fileURLToPath } from 'node:url';
import { defaultServerConditions } from 'vite';
import { defineConfig } from 'vitest/config';

/** The export condition under which `capibara-mcp`, `capibara-mcp/sdk` and `capibara-mcp/testing` resolve to src/ (see package.json). */
const SOURCE_CONDITION = 'capibara-source';

export default defineConfig({
  resolve: {
    // One copy of graphql: the CommonJS build Node itself resolves for graphql-yoga and Pothos (vite
    // would hand our sources the ESM build, and graphql refuses types "from another realm").
    alias: [{ find: /^graphql$/, replacement: fileURLToPath(new URL('./node_modules/graphql/index.js', import.meta.url)) }],
  },
  // Tests run in Vite's server environment: our own package resolves to its TypeScript sources there.
  // Vitest also hands these conditions to Node (--conditions) for external packages: `module` is left out, as Node
  // itself never uses it (OpenTelemetry's `module` builds have extensionless imports that Node's ESM loader refuses).
  ssr: { resolve: { conditions: [SOURCE_CONDITION, ...defaultServerConditions.filter((c) => c !== 'module')] } },
  test: {
    include: ['src/**/*.test.ts', 'plugins/**/*.test.ts', 'test/**/*.test.ts', 'examples/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    maxWorkers: 2,
  },
});
