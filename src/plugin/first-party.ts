import type { PluginDefinition, PluginKind } from './contract.ts';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type PluginModule = { default: PluginDefinition<PluginKind, any> };

/**
 * First-party plugins by name (folders under plugins/), loaded lazily. With `defaultPlugins: true`
 * (the default) all of these except auth plugins are set up with default options unless the config
 * lists them; an auth plugin is only active when listed in `plugins:`.
 */
export const FIRST_PARTY_PLUGINS: Record<string, () => Promise<PluginModule>> = {
  tfjs: () => import('../../plugins/backend-tfjs/index.ts'),
  openai: () => import('../../plugins/backend-openai/index.ts'),
  'kserve-v2': () => import('../../plugins/backend-kserve-v2/index.ts'),
  worker: () => import('../../plugins/backend-worker/index.ts'),
  'round-robin': () => import('../../plugins/balancer-round-robin/index.ts'),
  'weighted-random': () => import('../../plugins/balancer-weighted-random/index.ts'),
  'least-outstanding': () => import('../../plugins/balancer-least-outstanding/index.ts'),
  'p2c-ewma': () => import('../../plugins/balancer-p2c-ewma/index.ts'),
  'consistent-hash': () => import('../../plugins/balancer-consistent-hash/index.ts'),
  'api-key': () => import('../../plugins/auth-api-key/index.ts'),
};
