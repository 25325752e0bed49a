import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { McpError } from '../errors.ts';
import type { PluginHost } from '../plugin/host.ts';
import type { LimitsConfig } from './config.ts';
import { LimitsService } from './limits-service.ts';
import { MemoryRateLimitStore } from './memory-store.ts';

/** The limits service on the configured store: `memory` (built in) or a configured rateLimitStore plugin. */
export function createLimits(config: LimitsConfig, plugins: PluginHost, logger: Logger, registry: Registry): LimitsService {
  if (config.store === 'memory') return new LimitsService(config, new MemoryRateLimitStore(), logger, registry);
  if (!plugins.has('rateLimitStore', config.store)) {
    const configured = plugins.names('rateLimitStore');
    throw new McpError(
      'MCP_CONFIG_INVALID',
      `limits.store: no rateLimitStore plugin named "${config.store}" (memory, or one of: ${configured.join(', ') || 'none configured'})`,
      { details: { paths: ['limits.store'] } },
    );
  }
  return new LimitsService(config, plugins.get('rateLimitStore', config.store), logger, registry);
}
