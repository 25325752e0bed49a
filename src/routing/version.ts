import { McpError } from '../errors.ts';
import type { InferenceRequest } from '../inference/types.ts';
import type { InstanceHandle, ModelView } from '../models/fleet.ts';
import { chooseVariant, pickVariant } from './traffic-split.ts';

export interface VersionChoice {
  version: string;
  /** The split's variant, when a traffic split chose the version. */
  variant?: string;
  /** The variant the split picked first, when none of its instances was healthy. */
  diverted?: string;
}

/** What a sticky split may key on. */
type SplitKeySource = Pick<InferenceRequest, 'principal' | 'headers' | 'affinityKey'>;

/** What the split needs to know of an instance. */
export interface InstanceReadiness {
  /** Ready, loaded, not draining. */
  ready(h: InstanceHandle): boolean;
  /** Ready and allowed by its health (probes, breaker, ejection, throttle). */
  healthy(h: InstanceHandle): boolean;
}

/**
 * The version a request goes to: the pinned one (`pinned`, the request's own version on the
 * model it named, none on a fallback model), else the traffic split's pick among ready
 * variants (a not-ready canary gets nothing), else the default. When the picked variant has no
 * healthy instance (all ejected or circuits open) the request goes to another healthy variant and
 * the choice says which one it was diverted from, so the canary's health still counts against it
 * (automatic rollback).
 */
export function chooseVersion(view: ModelView, pinned: string | undefined, req: SplitKeySource, readiness: InstanceReadiness): VersionChoice {
  if (pinned) {
    if (!view.versions.has(pinned)) {
      throw new McpError('MCP_VERSION_NOT_FOUND', `model "${view.id}" has no version "${pinned}"`, { details: { model: view.id, version: pinned } });
    }
    return { version: pinned };
  }
  const split = view.routing.split;
  if (split && Object.keys(split).length) {
    const key = splitKey(view, req);
    const variants = Object.entries(split).map(([name, weight]) => {
      const pool = view.versions.get(name) ?? [];
      return { name, weight, ready: pool.some((h) => readiness.ready(h)), healthy: pool.some((h) => readiness.healthy(h)) };
    });
    const picked = pickVariant(variants, key);
    if (picked?.healthy) return { version: picked.name, variant: picked.name };
    if (picked) {
      const other = chooseVariant(
        variants.map((v) => ({ ...v, ready: v.healthy })),
        key,
      );
      if (other) return { version: other, variant: other, diverted: picked.name };
    }
  }
  const version = view.defaultVersion ?? view.versions.keys().next().value;
  if (!version) throw new McpError('MCP_NO_HEALTHY_INSTANCE', `model "${view.id}" has no versions`, { details: { model: view.id } });
  return { version };
}

/** Key of a sticky traffic split: the principal, or a header (absent → random assignment). */
function splitKey(view: ModelView, req: SplitKeySource): string | undefined {
  const sticky = view.routing.sticky;
  if (!sticky) return undefined;
  if (sticky.by === 'principal') return req.principal?.id;
  const name = (sticky.header ?? 'x-mcp-affinity-key').toLowerCase();
  const v = req.headers?.[name];
  const value = Array.isArray(v) ? v[0] : v;
  if (value) return value;
  return name === 'x-mcp-affinity-key' && !req.headers ? req.affinityKey : undefined;
}
