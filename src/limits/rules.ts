import { createHash } from 'node:crypto';
import ipaddr from 'ipaddr.js';
import type { RateLimitCharge } from '../plugin/contract.ts';
import type { Principal } from '../inference/types.ts';
import type { LimitRule } from './config.ts';

/** What a rule looks at in a request. */
export interface LimitSubject {
  principal?: Principal;
  ip?: string;
  /** Model id (inference only). */
  model?: string;
  entry: string;
}

/** A limit rule ready to use: its match test and the GCRA shape of its request and token limits. */
export interface CompiledRule {
  readonly rule: LimitRule;
  readonly requests?: { intervalMs: number; burst: number; quota: number };
  readonly tokens?: { intervalMs: number; burst: number; quota: number };
  matches(s: LimitSubject): boolean;
  /** The bucket key for this subject; undefined when the rule does not apply (apiKey scope without an API key). */
  keyOf(s: LimitSubject): string | undefined;
}

/** The principal's API key id, when it authenticated with an API key. */
function apiKeyOf(p: Principal | undefined): string | undefined {
  return p?.via === 'api-key' ? p.id : undefined;
}

/** A client address as a bucket: IPv4 (IPv4-mapped IPv6 too) as is, IPv6 by its /64 (one host usually holds a whole /64). */
export function ipBucket(ip: string | undefined): string {
  if (!ip) return 'unknown';
  try {
    let a = ipaddr.parse(ip);
    if (a.kind() === 'ipv6' && (a as ipaddr.IPv6).isIPv4MappedAddress()) a = (a as ipaddr.IPv6).toIPv4Address();
    if (a.kind() === 'ipv4') return a.toString();
    const parts = (a as ipaddr.IPv6).parts.slice(0, 4);
    return `${parts.map((p) => p.toString(16)).join(':')}::/64`;
  } catch {
    return 'unknown';
  }
}

const MAX_KEY = 200;

/** Keys stay short and free of separators whatever the ids hold. */
function bounded(key: string): string {
  return key.length <= MAX_KEY ? key : `${key.slice(0, 64)}#${createHash('sha256').update(key).digest('base64url')}`;
}

export function compileRule(rule: LimitRule): CompiledRule {
  const { match } = rule;
  const roles = match?.roles && new Set(match.roles);
  const models = match?.models && new Set(match.models);
  const entries = match?.entries && new Set(match.entries);
  const shape = (quota: number | undefined, burst: number | undefined) =>
    quota === undefined ? undefined : { intervalMs: rule.period / quota, burst: burst ?? quota, quota };
  return {
    rule,
    requests: shape(rule.requests, rule.burst),
    tokens: shape(rule.tokens, rule.tokenBurst),
    matches(s) {
      if (entries && !entries.has(s.entry)) return false;
      if (models && (s.model === undefined || !models.has(s.model))) return false;
      if (roles && !(s.principal?.roles ?? []).some((r) => roles.has(r))) return false;
      return true;
    },
    keyOf(s) {
      const parts: string[] = [];
      for (const scope of rule.scope) {
        switch (scope) {
          case 'global':
            parts.push('*');
            break;
          case 'principal':
            // Anonymous callers (no principal, or the anonymous one of auth off: via `none`) are told apart by address.
            parts.push(s.principal && s.principal.via !== 'none' ? `p=${encodeURIComponent(s.principal.id)}` : `anon=${ipBucket(s.ip)}`);
            break;
          case 'apiKey': {
            const key = apiKeyOf(s.principal);
            if (key === undefined) return undefined;
            parts.push(`k=${encodeURIComponent(key)}`);
            break;
          }
          case 'ip':
            parts.push(`ip=${ipBucket(s.ip)}`);
            break;
          case 'model':
            parts.push(`m=${encodeURIComponent(s.model ?? '-')}`);
            break;
        }
      }
      return bounded(`${rule.name}:${parts.join(',')}`);
    },
  };
}

/** The request-count charge of a rule for a key. */
export function requestCharge(rule: CompiledRule, key: string): RateLimitCharge | undefined {
  return rule.requests && { key: `r:${key}`, cost: 1, intervalMs: rule.requests.intervalMs, burst: rule.requests.burst };
}

/** The token charge of a rule for a key, `cost` tokens (bounded by the rule's token burst). */
export function tokenCharge(rule: CompiledRule, key: string, cost: number): RateLimitCharge | undefined {
  return rule.tokens && { key: `t:${key}`, cost: Math.min(cost, rule.tokens.burst), intervalMs: rule.tokens.intervalMs, burst: rule.tokens.burst };
}
