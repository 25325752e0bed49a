export {
  UpstreamClient, CallScope, DEFAULT_UPSTREAM_TIMEOUTS, readBody, joinUrl,
  type UpstreamTimeouts, type UpstreamClientOptions, type UpstreamRequest, type UpstreamJson, type UpstreamStream, type ErrorMapper,
} from './client.ts';
export {
  mapHttpError, mapTransportError, parseRetryAfter, parseErrorBody, deadlineError, cancelledError,
  type TimeoutKind, type UpstreamErrorBody,
} from './errors.ts';
export { SseParser, parseSse, type SseEvent } from './sse.ts';
export { parseNdjson } from './ndjson.ts';
export { upstreamPluginOptions, upstreamTimeoutsSchema, clientOptionsFrom, type UpstreamPluginOptions } from './options.ts';
