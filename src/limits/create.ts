import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { PluginHost } from '../plugin/host.ts';
import type { LimitsConfig } from './config.ts';
import { LimitsService } from './limits-service.ts';
import { MemoryRateLimitStore } from './memory-store.ts';

/** The limits service on the configured store: `memory` (built in) or a configured rateLimitStore plugin. */
export function createLimits(config: LimitsConfig, plugins: PluginHost, logger: Logger, registry: Registry): LimitsService {
  if (config.store === 'memory') return new LimitsService(config, new MemoryRateLimitStore(), logger, registry);
  // A name that is no rateLimitStore plugin is refused before the start (src/start-check.ts).
  return new LimitsService(config, plugins.get('rateLimitStore', config.store), logger, registry);
}
