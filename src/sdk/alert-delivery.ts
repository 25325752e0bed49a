/**
 * Building blocks of alert-sink plugins: one JSON form of an alert, and an HTTP POST whose
 * failures are errors that name the sink and the HTTP status or transport failure, never the URL,
 * headers or body (a webhook URL may hold a token), so the gateway can log them and retry.
 */
import { McpError } from '../errors.ts';
import type { Alert, PluginContext } from '../plugin/contract.ts';
import { UpstreamClient } from '../upstream/client.ts';

/**
 * The HTTP client of an alert sink: the plugin's address policy, a few keep-alive connections, and a connect
 * timeout within the delivery timeout. Without `logger` the client logs nothing (a sink whose URL is a credential).
 */
export function alertSinkClient(
  ctx: { addressPolicy: PluginContext['addressPolicy']; logger?: PluginContext['logger'] },
  timeoutMs: number,
  connections = 4,
): UpstreamClient {
  return new UpstreamClient({
    policy: ctx.addressPolicy,
    ...(ctx.logger ? { logger: ctx.logger } : {}),
    connections,
    timeouts: { connectMs: Math.min(timeoutMs, 5_000) },
  });
}

/** An alert as JSON: dates as ISO-8601 strings, `value` and `endsAt` only when known. */
export interface AlertJson {
  id: string;
  rule: string;
  severity: Alert['severity'];
  state: Alert['state'];
  summary: string;
  labels: Record<string, string>;
  value?: number;
  startsAt: string;
  endsAt?: string;
}

export function alertToJson(alert: Alert): AlertJson {
  return {
    id: alert.id,
    rule: alert.rule,
    severity: alert.severity,
    state: alert.state,
    summary: alert.summary,
    labels: { ...alert.labels },
    ...(alert.value !== undefined && Number.isFinite(alert.value) ? { value: alert.value } : {}),
    startsAt: alert.startsAt.toISOString(),
    ...(alert.endsAt ? { endsAt: alert.endsAt.toISOString() } : {}),
  };
}

/** A delivery failure as an McpError naming `what` and the reason only (status, transport error, timeout, abort); no cause is kept. */
export function deliveryFailure(what: string, err: unknown): McpError {
  if (err instanceof McpError && err.message.startsWith(`${what} `)) return err;
  const e = err instanceof McpError ? err : undefined;
  const status = e?.details?.status;
  const reason =
    typeof status === 'number'
      ? `HTTP ${status}`
      : e?.code === 'MCP_CANCELLED'
        ? 'aborted'
        : e?.code === 'MCP_DEADLINE_EXCEEDED'
          ? 'timed out'
          : e?.code === 'MCP_UPSTREAM_FORBIDDEN'
            ? 'the address is not allowed by security.upstream'
            : e
              ? e.message.replace(/model server/g, 'peer')
              : 'unexpected error';
  return new McpError(e?.code ?? 'MCP_UPSTREAM_ERROR', `${what} failed: ${reason}`, {
    details: typeof status === 'number' ? { status } : {},
    retryable: true,
  });
}

export interface AlertPost {
  url: string;
  json: unknown;
  headers?: Record<string, string>;
  signal: AbortSignal;
  timeoutMs: number;
  /** Names the sink in errors (`alert webhook`, `Slack webhook`, …). */
  what: string;
}

/** POSTs JSON; resolves with the status of a 2xx answer (its body read and dropped), rejects with {@link deliveryFailure} otherwise. */
export async function postAlert(client: UpstreamClient, req: AlertPost): Promise<number> {
  if (req.signal.aborted) throw new McpError('MCP_CANCELLED', `${req.what} failed: aborted`, { retryable: true });
  try {
    const answer = await client.open({
      method: 'POST',
      url: req.url,
      json: req.json,
      headers: req.headers ?? {},
      signal: req.signal,
      timeoutMs: req.timeoutMs,
      mapError: (status) =>
        new McpError(status === 429 ? 'MCP_UPSTREAM_RATE_LIMITED' : 'MCP_UPSTREAM_ERROR', `${req.what} failed: HTTP ${status}`, {
          details: { status },
          retryable: true,
        }),
    });
    try {
      let bytes = 0;
      for await (const chunk of answer.body) if ((bytes += chunk.byteLength) > 64 * 1024) break;
    } finally {
      answer.close();
    }
    return answer.status;
  } catch (err) {
    throw deliveryFailure(req.what, err);
  }
}
