/**
 * `capibara-mcp/sdk`: the building blocks a plugin author may use besides the contract (which
 * `capibara-mcp` exports). First-party plugins import only this, `capibara-mcp` and
 * `capibara-mcp/testing`; so can yours.
 */

/** Pooled HTTP client for model servers: per-call deadlines and cancellation, bounded bodies, errors mapped to McpError. */
export {
  UpstreamClient,
  CallScope,
  DEFAULT_UPSTREAM_TIMEOUTS,
  readBody,
  joinUrl,
  type UpstreamTimeouts,
  type UpstreamClientOptions,
  type UpstreamRequest,
  type UpstreamJson,
  type UpstreamStream,
  type ErrorMapper,
  LOGGED_ERROR_BODY_BYTES,
} from '../upstream/client.ts';
/** Upstream failures as McpError: HTTP status and body, transport errors, Retry-After, health-probe failures. */
export {
  mapHttpError,
  mapTransportError,
  parseRetryAfter,
  parseErrorBody,
  deadlineError,
  cancelledError,
  probeFailure,
  type TimeoutKind,
  type UpstreamErrorBody,
} from '../upstream/errors.ts';
/** Where upstream connections may go (the plugin context's `addressPolicy`), and the undici connector that enforces it. */
export {
  AddressPolicy,
  guardedConnector,
  checkEndpoint,
  forbiddenAddressError,
  type AddressPolicyOptions,
  type LookupFunction,
  type Refusal,
  type SecurityMode,
} from '../security/address-policy.ts';
/** Plugin options shared by HTTP backends (connections, timeouts, headers) and their client options. */
export { upstreamPluginOptions, upstreamTimeoutsSchema, clientOptionsFrom, type UpstreamPluginOptions } from '../upstream/options.ts';
/** Streaming body readers: server-sent events and newline-delimited JSON. */
export { SseParser, parseSse, type SseEvent } from '../upstream/sse.ts';
export { parseNdjson } from '../upstream/ndjson.ts';
/** Groups concurrent requests into batches (max size, max queue delay, priorities, deadlines). */
export {
  DynamicBatcher,
  type DynamicBatcherOptions,
  type BatchInfo,
  type SubmitOptions,
  type BatcherStats,
  type BatchFunction,
} from '../inference/dynamic-batcher.ts';
/** Non-cryptographic string hashes for routing decisions (sticky splits, consistent hashing). */
export { hash32, hashToUnit, fmix32 } from './hash.ts';
/** The exclude set a balancer should honour on retries. */
export { effectiveExclude } from './exclude.ts';
/** A small seeded PRNG (reproducible sampling and tests). */
export { mulberry32 } from './random.ts';
/** Token claims → principal id, roles (mapped), models and kept claims: shared by the jwt, auth0 and oauth2 plugins. */
export { claimMappingShape, claimMappingSchema, claimAt, claimList, createClaimMapper, type ClaimMapping, type MappedClaims } from './claims.ts';
/** Secret options as references (`env:NAME`, `file:PATH`) resolved at setup. */
export { secretReference, resolveSecret, type ResolvedSecret } from './secret-ref.ts';
/** A bounded LRU cache with a per-entry expiry (verified credentials on the request path). */
export { TtlCache } from './ttl-cache.ts';

/** JWT verification for auth strategies: pinned algorithms, keys from a secret, PEM/JWK or a JWKS URL (cached, refetch cooldown). */
export {
  createJwtStrategy,
  jwtOptions,
  jwtOptionsShape,
  checkJwtOptions,
  bearerToken,
  keyServerUrl,
  HMAC_ALGORITHMS,
  ASYMMETRIC_ALGORITHMS,
  type JwtOptions,
  type JwtStrategy,
} from './jwt-verifier.ts';
/** Password hashing (scrypt, per-password salt, parameters in the hash string) for auth plugins. */
export { hashPassword, verifyPassword, DEFAULT_SCRYPT_PARAMS, type ScryptParams } from './password.ts';
/** The API key format (`mcp_sk_…` with a checksum), key generation and the SHA-256 that is stored. */
export { KEY_PREFIX, checksumOf, looksLikeApiKey, sha256Hex, generateApiKey } from './api-key.ts';
/** For alert-sink plugins: an alert as JSON, and a JSON POST whose errors name the sink and the status, never the URL. */
export { alertSinkClient, alertToJson, deliveryFailure, postAlert, type AlertJson, type AlertPost } from './alert-delivery.ts';
/** Window arithmetic over a scaling signal's samples, for scaler plugins. */
export { windowAverage, slidingAverages, sinceCovered } from './scaling.ts';
/** Metrics several plugin instances record into together. */
export { sharedCounter, sharedGauge } from './shared-metrics.ts';
