/**
 * Public API of capibara-mcp for plugin authors and embedders. The plugin contract itself is
 * documented in src/plugin/contract.ts.
 */
export * from './plugin/contract.ts';
export type * from './inference/types.ts';
export { ERROR_CODES, McpError, isMcpError, type ErrorCode } from './errors.ts';
export { createGateway, type Gateway, type GatewayOptions } from './gateway.ts';
export { loadConfig } from './config/loader.ts';
export { configSchema, type Config, type ConfigInput } from './config/schema.ts';
export { DynamicBatcher } from './inference/dynamic-batcher.ts';
export { createWorkerHttpServer, type WorkerHttpServerOptions } from './workers/http-server.ts';
