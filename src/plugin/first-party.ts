import { fileURLToPath } from 'node:url';

/** plugins/ next to src/ (running from TypeScript), dist/plugins/ next to dist/src/ (compiled): each folder a package. */
const PLUGINS_DIR = fileURLToPath(new URL('../../plugins/', import.meta.url));

/** Package folders of the first-party plugins. */
const FOLDERS = {
  tfjs: 'backend-tfjs',
  openai: 'backend-openai',
  'kserve-v2': 'backend-kserve-v2',
  worker: 'backend-worker',
  'round-robin': 'balancer-round-robin',
  'weighted-random': 'balancer-weighted-random',
  'least-outstanding': 'balancer-least-outstanding',
  'p2c-ewma': 'balancer-p2c-ewma',
  'consistent-hash': 'balancer-consistent-hash',
  'api-key': 'auth-api-key',
  jwt: 'auth-jwt',
  auth0: 'auth-auth0',
  oauth2: 'auth-oauth2',
  'ratelimit-redis': 'ratelimit-redis',
  password: 'auth-password',
  'alert-webhook': 'alert-webhook',
  'alert-slack': 'alert-slack',
  'alert-email': 'alert-email',
  'alert-alertmanager': 'alert-alertmanager',
  'alert-log': 'alert-log',
  'target-ongoing': 'scaler-target-ongoing',
  kpa: 'scaler-kpa',
  slo: 'scaler-slo',
} as const;

/**
 * First-party plugins by name → the package folder the loader reads, like a third-party package
 * folder. With `defaultPlugins: true` (the default) all of these except auth plugins are set up with
 * default options unless the config lists them; an auth plugin is set up when `auth.strategies` names it or `plugins:` lists it.
 */
export const FIRST_PARTY_PLUGINS: Readonly<Record<string, string>> = Object.fromEntries(
  Object.entries(FOLDERS).map(([name, folder]) => [name, PLUGINS_DIR + folder]),
);
