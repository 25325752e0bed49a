import { randomUUID } from 'node:crypto';
import { McpError } from '../errors.ts';
import { checkId, parseInput } from '../validation.ts';
import type { InferenceInput, InferenceRequest, Principal } from './types.ts';
import { inferenceInputSchema, liftExtraParameters } from './schema.ts';
import { parsePriority } from '../admission/priority.ts';

export interface RequestParts {
  model: string;
  version?: string;
  input: unknown;
  stream?: boolean;
  entry: string;
  signal: AbortSignal;
  id?: string;
  /** Deadline from now, ms (the GraphQL `timeoutMs` argument); otherwise the `x-mcp-timeout-ms` header. */
  timeoutMs?: number | null;
  principal?: Principal;
  /** Client address (rate limits per IP, audit rows). */
  ip?: string;
  onLimits?: InferenceRequest['onLimits'];
  onCache?: InferenceRequest['onCache'];
  affinityKey?: string;
  explain?: boolean;
  headers?: InferenceRequest['headers'];
  /** The entry's spans, when tracing is on. */
  trace?: InferenceRequest['trace'];
  /** Admission priority (a GraphQL/REST argument: name or 0…3); otherwise the `x-mcp-priority` header. */
  priority?: unknown;
}

/** Longest per-request deadline an entry point may ask for, ms. */
export const MAX_TIMEOUT_MS = 3_600_000;

function headerValue(headers: RequestParts['headers'], name: string): string | undefined {
  const v = headers?.[name];
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/** `now + timeout`, or undefined without one; a timeout outside 1 ms … 1 h is MCP_VALIDATION_FAILED. */
function deadlineOf(timeout: unknown, path: string): number | undefined {
  if (timeout === undefined || timeout === null || timeout === '') return undefined;
  const ms = typeof timeout === 'number' ? timeout : Number(timeout);
  if (!Number.isFinite(ms) || ms <= 0 || ms > MAX_TIMEOUT_MS) {
    throw new McpError('MCP_VALIDATION_FAILED', `${path}: a number of milliseconds from 1 to ${MAX_TIMEOUT_MS}`, { details: { path } });
  }
  return Date.now() + ms;
}

/**
 * Validates an inference input against the one schema (./schema.ts); a refusal is
 * MCP_VALIDATION_FAILED naming the first bad path under `prefix`. Parameters given in the
 * pass-through `extra` (max_tokens, …) are moved into `parameters` first, so the same bounds apply.
 */
export function parseInferenceInput(raw: unknown, prefix = 'input'): InferenceInput {
  return parseInput(inferenceInputSchema, liftExtraParameters(raw), prefix);
}

/** Validates the input and builds the one request type every entry point hands to InferenceService. */
export function buildInferenceRequest(parts: RequestParts): InferenceRequest {
  checkId(parts.model, 'model');
  if (parts.version !== undefined) checkId(parts.version, 'version');
  const input = parseInferenceInput(parts.input);
  return {
    id: parts.id ?? randomUUID(),
    model: parts.model,
    version: parts.version,
    input,
    stream: parts.stream ?? false,
    deadline:
      parts.timeoutMs !== undefined && parts.timeoutMs !== null
        ? deadlineOf(parts.timeoutMs, 'timeoutMs')
        : deadlineOf(parts.headers?.['x-mcp-timeout-ms'], 'x-mcp-timeout-ms'),
    signal: parts.signal,
    principal: parts.principal,
    ...(parts.ip ? { ip: parts.ip } : {}),
    ...(parts.onLimits ? { onLimits: parts.onLimits } : {}),
    ...(parts.onCache ? { onCache: parts.onCache } : {}),
    // The x-mcp-affinity-key header wins over what the entry point proposes, then the principal.
    affinityKey: headerValue(parts.headers, 'x-mcp-affinity-key') ?? parts.affinityKey ?? parts.principal?.id,
    explain: parts.explain ?? headerValue(parts.headers, 'x-mcp-explain') === '1',
    entry: parts.entry,
    ...(parts.headers ? { headers: parts.headers } : {}),
    ...(parts.trace ? { trace: parts.trace } : {}),
    ...(parts.ip ? { ip: parts.ip } : {}),
    ...admissionOf(parts),
  };
}

/** The admission priority and queue timeout a request asks for (argument, else header); nothing when it asks for neither. */
function admissionOf(parts: RequestParts): Pick<InferenceRequest, 'priority' | 'queueTimeoutMs'> {
  const out: Pick<InferenceRequest, 'priority' | 'queueTimeoutMs'> = {};
  if (parts.priority !== undefined && parts.priority !== null) out.priority = parsePriority(parts.priority, 'priority');
  else {
    const h = headerValue(parts.headers, 'x-mcp-priority');
    if (h !== undefined) out.priority = parsePriority(h, 'x-mcp-priority');
  }
  const qt = headerValue(parts.headers, 'x-mcp-queue-timeout-ms');
  if (qt !== undefined) {
    const ms = Number(qt);
    if (!Number.isInteger(ms) || ms < 1 || ms > MAX_TIMEOUT_MS) {
      throw new McpError('MCP_VALIDATION_FAILED', `x-mcp-queue-timeout-ms: a whole number of milliseconds from 1 to ${MAX_TIMEOUT_MS}`, {
        details: { path: 'x-mcp-queue-timeout-ms' },
      });
    }
    out.queueTimeoutMs = ms;
  }
  return out;
}
