import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { McpError } from '../errors.ts';
import { parseInput } from '../validation.ts';
import type { InferenceInput, InferenceRequest, Principal } from './types.ts';

const DATATYPES = ['BOOL', 'UINT8', 'UINT16', 'UINT32', 'UINT64', 'INT8', 'INT16', 'INT32', 'INT64', 'FP16', 'FP32', 'FP64', 'BYTES'] as const;

export const parametersSchema = z.strictObject({
  maxTokens: z.number().int().min(1).max(32_768).optional(),
  temperature: z.number().min(0).max(2).optional(),
  topK: z.number().int().min(0).max(1000).optional(),
  topP: z.number().gt(0).max(1).optional(),
  seed: z.number().int().min(0).max(2 ** 32 - 1).optional(),
  stop: z.array(z.string().min(1).max(64)).max(4).optional(),
});

export const tensorSchema = z.strictObject({
  name: z.string().min(1).max(128),
  shape: z.array(z.number().int().min(0).max(1 << 24)).max(8),
  datatype: z.enum(DATATYPES),
  data: z.array(z.union([z.number(), z.string(), z.boolean()])).max(1 << 22),
}).refine((t) => t.shape.reduce((a, b) => a * b, 1) === t.data.length, { message: 'data length does not match the product of shape' });

/** The validated form of an inference input, whatever the entry point. */
export const inferenceInputSchema = z.strictObject({
  task: z.enum(['generate', 'chat', 'embed', 'tensor']),
  prompt: z.string().max(1_000_000).optional(),
  messages: z.array(z.strictObject({ role: z.enum(['system', 'user', 'assistant', 'tool']), content: z.string().max(1_000_000) })).min(1).max(1000).optional(),
  texts: z.array(z.string().max(1_000_000)).min(1).max(2048).optional(),
  tensors: z.array(tensorSchema).min(1).max(64).optional(),
  outputs: z.array(z.string()).max(64).optional(),
  parameters: parametersSchema.optional(),
  extra: z.record(z.string(), z.unknown()).optional(),
}).superRefine((v, ctx) => {
  const need = { generate: 'prompt', chat: 'messages', embed: 'texts', tensor: 'tensors' } as const;
  const field = need[v.task];
  if (v[field] === undefined) ctx.addIssue({ code: 'custom', path: [field], message: `task "${v.task}" needs \`${field}\`` });
});

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
  affinityKey?: string;
  explain?: boolean;
  headers?: InferenceRequest['headers'];
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

/** Validates the input and builds the one request type every entry point hands to InferenceService. */
export function buildInferenceRequest(parts: RequestParts): InferenceRequest {
  const input = parseInput(inferenceInputSchema, parts.input, 'input') as InferenceInput;
  return {
    id: parts.id ?? randomUUID(),
    model: parts.model,
    version: parts.version,
    input,
    stream: parts.stream ?? false,
    deadline: parts.timeoutMs !== undefined && parts.timeoutMs !== null
      ? deadlineOf(parts.timeoutMs, 'timeoutMs')
      : deadlineOf(parts.headers?.['x-mcp-timeout-ms'], 'x-mcp-timeout-ms'),
    signal: parts.signal,
    principal: parts.principal,
    // The x-mcp-affinity-key header wins over what the entry point proposes, then the principal.
    affinityKey: headerValue(parts.headers, 'x-mcp-affinity-key') ?? parts.affinityKey ?? parts.principal?.id,
    explain: parts.explain ?? headerValue(parts.headers, 'x-mcp-explain') === '1',
    entry: parts.entry,
    ...(parts.headers ? { headers: parts.headers } : {}),
  };
}
