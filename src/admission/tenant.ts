import type { Principal } from '../inference/types.ts';
import type { AdmissionConfig } from './config.ts';

/** Who a request shares fairly as (admission.tenantBy); `anonymous` without a principal. */
export function tenantOf(config: Pick<AdmissionConfig, 'tenantBy' | 'teamClaim'>, principal: Principal | undefined): string {
  if (!principal) return 'anonymous';
  if (config.tenantBy === 'team') {
    const team = principal.claims?.[config.teamClaim];
    if (typeof team === 'string' && team !== '') return `team:${team}`;
  } else if (config.tenantBy === 'apiKey' && principal.via === 'api-key') {
    return `key:${principal.id}`;
  }
  return principal.id;
}
