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

/** The RateLimit-Policy and RateLimit headers for these policies; none for an empty list. */
export function rateLimitHeaders(policies: readonly LimitPolicyState[]): Record<string, string> {
  if (policies.length === 0) return {};
  return {
    'ratelimit-policy': policies.map((p) => `"${p.name}";q=${p.q};w=${p.w}`).join(', '),
    ratelimit: policies.map((p) => `"${p.name}";r=${p.r};t=${p.t}`).join(', '),
  };
}

/** Sets the RateLimit headers on a response not yet sent (successful limited calls). */
export function setRateLimitHeaders(res: ServerResponse, policies: readonly LimitPolicyState[]): void {
  if (res.headersSent) return;
  for (const [k, v] of Object.entries(rateLimitHeaders(policies))) res.setHeader(k, v);
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
