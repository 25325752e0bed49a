/**
 * Token claims → principal: the one mapping the jwt, auth0 and oauth2 auth plugins share. A claim is
 * named by a dotted path (`realm_access.roles`), where a key that itself contains dots (an Auth0
 * namespaced claim such as `https://example.com/roles`) is matched whole first. Role claims may be a
 * JSON array of strings or a space/comma-separated string (an OAuth2 `scope`).
 */
import { z } from 'zod';
import { McpError } from '../errors.ts';

/** Items read from one list claim at most, and the longest item kept (longer ones are ignored). */
const MAX_ITEMS = 256;
const MAX_ITEM_CHARS = 256;
const MAX_PATH_SEGMENTS = 16;

const claimPath = z.string().min(1).max(512);
const roleName = z.string().min(1).max(128);

/** Options every claim-mapping strategy accepts (spread into its options object). */
export const claimMappingShape = {
  /** Claim holding the principal id (default `sub`). */
  subjectClaim: claimPath.default('sub'),
  /** Claim holding the external roles/groups/scopes (dotted path); absent: the token gives no roles of its own. */
  rolesClaim: claimPath.optional(),
  /**
   * External role → gateway role(s). When given, only mapped roles count (unmapped ones are dropped);
   * when absent, the external names are used as they are.
   */
  roleMap: z.record(z.string().min(1).max(MAX_ITEM_CHARS), z.union([roleName, z.array(roleName)])).optional(),
  /** Roles every principal of this strategy gets, besides the mapped ones. */
  defaultRoles: z.array(roleName).default([]),
  /** Claim listing the models the principal may use; absent from the token: every model. */
  modelsClaim: claimPath.optional(),
  /** Claims copied into `Principal.claims` (dotted paths; default: `iss` only). */
  keepClaims: z.array(claimPath).max(32).default(['iss']),
};
export const claimMappingSchema = z.strictObject(claimMappingShape);
export type ClaimMapping = z.output<typeof claimMappingSchema>;

/** What a token's claims give: the principal fields apart from `via` and `expiresAt`. */
export interface MappedClaims {
  id: string;
  roles: string[];
  models?: string[];
  claims: Record<string, unknown>;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function lookup(obj: unknown, segments: readonly string[]): unknown {
  if (!isRecord(obj)) return undefined;
  // Longest key first, so `https://example.com/roles` is one key, not a path through `https://example`.
  for (let k = segments.length; k >= 1; k--) {
    const key = k === 1 ? segments[0]! : segments.slice(0, k).join('.');
    if (!Object.hasOwn(obj, key)) continue;
    if (k === segments.length) return obj[key];
    const found = lookup(obj[key], segments.slice(k));
    if (found !== undefined) return found;
  }
  return undefined;
}

/** The value at a dotted claim path (own properties only), or undefined. */
export function claimAt(claims: unknown, path: string): unknown {
  if (isRecord(claims) && Object.hasOwn(claims, path)) return claims[path];
  const segments = path.split('.');
  return segments.length > MAX_PATH_SEGMENTS ? undefined : lookup(claims, segments);
}

/** A list claim as strings: an array of strings, or a space/comma-separated string; bounded. */
export function claimList(value: unknown): string[] {
  const items = typeof value === 'string' ? value.split(/[\s,]+/) : Array.isArray(value) ? value : [];
  const out: string[] = [];
  for (const item of items) {
    if (out.length >= MAX_ITEMS) break;
    if (typeof item === 'string' && item !== '' && item.length <= MAX_ITEM_CHARS) out.push(item);
  }
  return out;
}

/** Builds the mapping of one strategy: claims → { id, roles, models, claims }. Throws MCP_UNAUTHENTICATED without a subject. */
export function createClaimMapper(mapping: ClaimMapping): (claims: Record<string, unknown>) => MappedClaims {
  const roleMap = mapping.roleMap ? new Map(Object.entries(mapping.roleMap).map(([k, v]) => [k, typeof v === 'string' ? [v] : v])) : undefined;
  return (claims) => {
    const sub = claimAt(claims, mapping.subjectClaim);
    if (typeof sub !== 'string' || sub === '' || sub.length > MAX_ITEM_CHARS) {
      throw new McpError('MCP_UNAUTHENTICATED', `invalid token: no usable "${mapping.subjectClaim}" claim`, { details: { reason: 'subject' } });
    }
    const roles = new Set(mapping.defaultRoles);
    if (mapping.rolesClaim) {
      for (const external of claimList(claimAt(claims, mapping.rolesClaim))) {
        if (!roleMap) roles.add(external);
        else for (const r of roleMap.get(external) ?? []) roles.add(r);
      }
    }
    const out: MappedClaims = { id: sub, roles: [...roles], claims: {} };
    if (mapping.modelsClaim) {
      const raw = claimAt(claims, mapping.modelsClaim);
      if (raw !== undefined) out.models = claimList(raw);
    }
    for (const path of mapping.keepClaims) {
      const v = claimAt(claims, path);
      if (v !== undefined) out.claims[path] = v;
    }
    return out;
  };
}
