/**
 * `capibara-mcp`: the public API for plugin authors and embedders: the plugin contract (documented
 * in src/plugin/contract.ts), the request and result types, errors, and the gateway and worker server
 * for embedding. Plugin building blocks are in `capibara-mcp/sdk`, the test kit in `capibara-mcp/testing`.
 */
export * from './plugin/contract.ts';
export type * from './inference/types.ts';
export { CHAT_ROLES, TASKS, TENSOR_DATATYPES, inferenceInputSchema } from './inference/schema.ts';
export { parseInferenceInput } from './inference/request.ts';
export { ERROR_CODES, McpError, isMcpError, type ErrorCode } from './errors.ts';
export { createGateway, type Gateway, type GatewayOptions } from './gateway.ts';
export { loadConfig } from './config/loader.ts';
export { configSchema, type Config, type ConfigInput } from './config/schema.ts';
export { DynamicBatcher } from './inference/dynamic-batcher.ts';
export { createWorkerHttpServer, type WorkerHttpServerOptions } from './workers/http-server.ts';
export {
  deriveWorkerCallToken,
  loadWorkerCallKey,
  workerCallKeyFromEnv,
  WORKER_CALL_KEY_ENV,
  WORKER_CALL_KEY_FILE,
  type WorkerCallSigner,
} from './workers/call-auth.ts';
