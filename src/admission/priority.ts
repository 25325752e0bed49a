/**
 * Priority levels of admission queues: 0 (critical) is served first, 3 (low) last. A request asks
 * for one (`x-mcp-priority` header, or a GraphQL/REST `priority` argument) by name or number; what
 * it gets is capped by what its principal may use (admission.maxPriority).
 */
import { McpError } from '../errors.ts';
import type { Principal } from '../inference/types.ts';

export const PRIORITY_NAMES = ['critical', 'high', 'normal', 'low'] as const;
export type PriorityName = (typeof PRIORITY_NAMES)[number];
/** Number of levels; a level is an index into PRIORITY_NAMES. */
export const PRIORITY_LEVELS = PRIORITY_NAMES.length;

/** The level of a name or a number 0…3; MCP_VALIDATION_FAILED naming `path` otherwise. */
export function parsePriority(value: unknown, path: string): number {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0 && value < PRIORITY_LEVELS) return value;
  if (typeof value === 'string') {
    const v = value.trim().toLowerCase();
    const i = PRIORITY_NAMES.indexOf(v as PriorityName);
    if (i >= 0) return i;
    if (/^\d$/.test(v) && Number(v) < PRIORITY_LEVELS) return Number(v);
  }
  throw new McpError('MCP_VALIDATION_FAILED', `${path}: one of ${PRIORITY_NAMES.join(', ')} (or 0 to ${PRIORITY_LEVELS - 1})`, { details: { path } });
}

export interface PriorityCaps {
  /** The best level a principal without a listed role or id may use. */
  default: number;
  /** Role → best level its holders may use (a principal gets the best of its roles). */
  roles: ReadonlyMap<string, number>;
  /** Principal (API key) id → best level; wins over the roles. */
  principals: ReadonlyMap<string, number>;
}

/** The best (lowest-numbered) level the principal may use. */
export function priorityCap(caps: PriorityCaps, principal: Principal | undefined): number {
  if (!principal) return caps.default;
  const own = caps.principals.get(principal.id);
  if (own !== undefined) return own;
  let best = caps.default;
  for (const r of principal.roles) {
    const l = caps.roles.get(r);
    if (l !== undefined && l < best) best = l;
  }
  return best;
}

/** The level a request gets: what it asked for (or the default), never better than its cap. */
export function effectivePriority(requested: number | undefined, fallback: number, cap: number): number {
  const want = requested ?? fallback;
  return want < cap ? cap : want;
}
