/**
 * `capibara-mcp/testing`: the kit plugin authors test with (vitest; `fast-check` for the property
 * checks). Conformance suites, one per capability kind with implementations, each registering a
 * `describe` block; a plugin context for setting a plugin up on its own; real servers on loopback
 * (fake OpenAI-compatible and KServe v2 model servers, a fault-injecting proxy); and a real
 * gateway on port 0 to load a plugin from a config.
 */

/** Conformance suites. */
export { describeBalancerConformance, type BalancerConformanceOptions } from './balancer.ts';
export { describeBackendConformance, type BackendCheck, type BackendConformanceFixture, type BackendConformanceOptions, type SlowRequest } from './backend.ts';
export { describeAuthConformance, startJwksServer, type AuthConformanceFixture, type AuthConformanceOptions, type JwksServer } from './auth.ts';
export { describeScalerConformance, scalingSignal, type ScalerConformanceOptions } from './scaler.ts';
export { describeRateLimitStoreConformance, type RateLimitStoreConformanceOptions } from './rate-limit-store.ts';
export {
  describeAlertSinkConformance,
  sampleAlert,
  startSilentServer,
  type AlertSinkConformanceFixture,
  type AlertSinkConformanceOptions,
} from './alert-sink.ts';

/** A plugin context for tests of one plugin on its own; close() runs its onClose hooks. */
export { testPluginContext } from './plugin-context.ts';
/** An in-memory credential store (users, API keys, sessions) for testing an auth plugin on its own. */
export { MemoryCredentialStore } from './memory-credentials.ts';

/** A real gateway on 127.0.0.1:0 (PGlite in memory, or a throwaway PostgreSQL database when DATABASE_URL is set). */
export {
  startTestGateway,
  createTestDatabase,
  STORAGES,
  TEST_ADMIN_PASSWORD,
  type TestGateway,
  type TestGatewayOptions,
  type Storage as TestStorage,
} from './gateway.ts';

/** Model servers and network faults on loopback. */
export { startFakeOpenAI, type FakeOpenAIServer, type FakeOpenAIBehavior, type RecordedRequest } from './fake-openai-server.ts';
export {
  startFakeKServe,
  DOUBLER_MODEL,
  type FakeKServeServer,
  type FakeKServeBehavior,
  type FakeKServeModel,
  type FakeKServeTensorMeta,
} from './fake-kserve-server.ts';
export { startFaultProxy, seededRandom, type Fault, type FaultProxy } from './fault-proxy.ts';
export { listenOnLoopback, tallyingListener, freeLoopbackPort, type LoopbackServer, type RequestTally, type ServerCounters } from './loopback-server.ts';
