/**
 * One gateway of the tracing-cost bench, in its own process: PGlite in memory, auth off, the chat
 * model on the upstream given in argv, inference recording off, tracing as given in argv (JSON); or the gateway
 * of another checkout (argv[4]). Sends `{ url }` over IPC.
 */
import type { startTestGateway as Start } from '../../src/testing/gateway.ts';

const [upstream, tracingJson, checkout] = process.argv.slice(2) as [string, string, string | undefined];
// Another checkout (the bench's --baseline): its gateway, without a `tracing` section (a build without the code).
const source = checkout ? `${checkout}/src/testing/gateway.ts` : '../../src/testing/gateway.ts';
const { startTestGateway } = (await import(source)) as { startTestGateway: typeof Start };
const tracing = checkout ? {} : { tracing: JSON.parse(tracingJson) as Record<string, unknown> };
const gw = await startTestGateway({
  defaultPlugins: false,
  plugins: [{ use: 'openai' }, { use: 'round-robin' }],
  // Per-inference records off: their database writes (PGlite, in this process) would be most of the noise.
  router: { balancer: 'round-robin', recording: { enabled: false } },
  log: { level: 'silent', access: false },
  models: [
    {
      id: 'chatty',
      task: 'chat',
      defaultVersion: 'v1',
      versions: [{ version: 'v1', instances: [{ id: 'chatty-v1-0', backend: 'openai', endpoint: upstream, options: { model: 'fake-model' } }] }],
    },
  ],
  ...tracing,
});
process.send?.({ url: gw.url });
process.on('disconnect', () => void gw.close().then(() => process.exit(0)));
