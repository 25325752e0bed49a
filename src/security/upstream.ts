/** Builds the upstream safety pieces from `security` and the gateway's secret box: the address policy and the instance secrets. */
import type { Logger } from 'pino';
import { AddressPolicy, validateCidrs, type LookupFunction } from './address-policy.ts';
import type { SecurityConfig } from './config.ts';
import { InstanceSecrets, SecretFields, type SecretBox } from './secrets.ts';

export interface UpstreamSafety {
  policy: AddressPolicy;
  secrets: InstanceSecrets;
  /** The gateway's one secret box (secret-key.ts): instance secrets and the access-token signing key. */
  box: SecretBox;
}

export function createUpstreamSafety(
  security: SecurityConfig,
  opts: { box: SecretBox; baseDir: string; logger: Logger; lookup?: LookupFunction; env?: NodeJS.ProcessEnv },
): UpstreamSafety {
  validateCidrs(security.upstream.allowCidrs, 'security.upstream.allowCidrs');
  const policy = new AddressPolicy({
    mode: security.mode,
    allowHosts: security.upstream.allowHosts,
    allowCidrs: security.upstream.allowCidrs,
    ...(opts.lookup ? { lookup: opts.lookup } : {}),
  });
  if (security.mode === 'strict' && security.upstream.allowHosts.length === 0 && security.upstream.allowCidrs.length === 0) {
    opts.logger.warn('security.mode is strict and security.upstream lists no host or CIDR: every upstream connection will be refused');
  }
  const { box } = opts;
  if (!box.canSeal) {
    opts.logger.info('no secret key (MCP_SECRET_KEY / MCP_SECRET_KEY_FILE): secret instance options must be env: or file: references (literals are refused)');
  }
  const secrets = new InstanceSecrets({
    box,
    fields: new SecretFields(security.secrets.extraKeys),
    fileRoots: security.secrets.fileRoots,
    baseDir: opts.baseDir,
    ...(opts.env ? { env: opts.env } : {}),
  });
  return { policy, secrets, box };
}
