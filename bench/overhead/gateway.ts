/**
 * Our gateway for the overhead bench: the shipped defaults (access log on, health probes on, PGlite in a
 * data folder, created fresh for each process) except no demo model and only the plugins it needs, with
 * api-key auth on. UPSTREAM_URL = the upstream's /v1 base; KEY_SHA256 = the accepted key's hash.
 */
import { rmSync } from 'node:fs';
import { configSchema } from '../../src/config/schema.ts';
import { createGateway } from '../../src/gateway.ts';
import { createLogger } from '../../src/logging.ts';

function freshDataDir(): string {
  const dir = `bench/.out/data-${process.pid}`;
  rmSync(dir, { recursive: true, force: true });
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const config = configSchema.parse({
  server: { port: 0, host: '127.0.0.1', playground: false },
  // DATABASE_URL set: PostgreSQL (as in production); otherwise the embedded PGlite in a data folder, as shipped.
  storage: process.env.DATABASE_URL ? { url: process.env.DATABASE_URL } : { dataDir: freshDataDir() },
  demo: { enabled: false },
  log: { level: 'info' },
  // Per-inference records (on by default, as shipped; RECORDING=0 turns them off). On, every answer is also written to the embedded
  // PGlite database inside the gateway process (in production that work is PostgreSQL's, elsewhere).
  router: { recording: { enabled: process.env.RECORDING !== '0' } },
  defaultPlugins: false,
  plugins: [
    { use: 'openai' },
    { use: 'p2c-ewma' },
    { use: 'api-key', options: { keys: [{ id: 'bench', sha256: process.env.KEY_SHA256!, roles: ['admin'] }] } },
  ],
  models: [{ id: 'chat-model', task: 'chat', defaultVersion: 'v1', versions: [{ version: 'v1', instances: [{ backend: 'openai', endpoint: process.env.UPSTREAM_URL!, options: { model: 'fake-model' } }] }] }],
});
// Logs go to stdout, which the bench sends to /dev/null: the cost of writing them is measured.
const gw = await createGateway({ config, logger: createLogger(config.log.level) });
process.send?.({ port: Number(new URL(gw.url).port) });
process.on('disconnect', () => void gw.close().then(() => process.exit(0)));
