/**
 * IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-headers-09):
 * `RateLimit-Policy: "per-key";q=100;w=60` (quota q per window w seconds) and
 * `RateLimit: "per-key";r=0;t=12` (r units remaining, t seconds until they are back / until a retry may succeed).
 */

import type { ServerResponse } from 'node:http';

/** One limit's state in a response, as carried in McpError details (`policies`). */
export interface LimitPolicyState {
  /** Rule name; `<rule>-tokens` for a token limit. */
  name: string;
  /** Quota per window. */
  q: number;
  /** Window, seconds. */
  w: number;
  /** Remaining units. */
  r: number;
  /** Seconds until the units are back (refused: until a retry may succeed). */
  t: number;
}

/** `RateLimit-Policy`'s value: each policy's quota and window. */
function policyHeader(policies: readonly LimitPolicyState[]): string {
  let s = '';
  for (const p of policies) s += `${s ? ', ' : ''}"${p.name}";q=${p.q};w=${p.w}`;
  return s;
}

/** `RateLimit`'s value: each policy's remaining units and seconds until they are back. */
function stateHeader(policies: readonly LimitPolicyState[]): string {
  let s = '';
  for (const p of policies) s += `${s ? ', ' : ''}"${p.name}";r=${p.r};t=${p.t}`;
  return s;
}

/** The RateLimit-Policy and RateLimit headers for these policies; none for an empty list. */
export function rateLimitHeaders(policies: readonly LimitPolicyState[]): Record<string, string> {
  if (policies.length === 0) return {};
  return { 'ratelimit-policy': policyHeader(policies), ratelimit: stateHeader(policies) };
}

/** Sets the RateLimit headers on a response not yet sent (successful limited calls; on every call, so no intermediate object). */
export function setRateLimitHeaders(res: ServerResponse, policies: readonly LimitPolicyState[]): void {
  if (res.headersSent || policies.length === 0) return;
  res.setHeader('ratelimit-policy', policyHeader(policies));
  res.setHeader('ratelimit', stateHeader(policies));
}

/** Reads the policies an McpError carries (`details.policies`), ignoring anything malformed. */
export function policiesOf(details: Record<string, unknown> | undefined): LimitPolicyState[] {
  const list = details?.policies;
  if (!Array.isArray(list)) return [];
  return list.filter(
    (p): p is LimitPolicyState =>
      typeof p === 'object' && p !== null && typeof p.name === 'string' && /^[\w-]+$/.test(p.name) && [p.q, p.w, p.r, p.t].every(Number.isFinite),
  );
}
