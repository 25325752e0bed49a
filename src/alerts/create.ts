import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { AlertsConfig } from './config.ts';
import { writeDeadLetter } from './dead-letters.ts';
import { AlertDispatcher, type DeadLetter } from './dispatcher.ts';
import type { Database } from '../db/client.ts';
import { McpError } from '../errors.ts';
import type { PluginHost } from '../plugin/host.ts';

/** Writes one dead letter to `alert_dead_letters`. */
export function deadLetterTable(database: Database): (letter: DeadLetter) => Promise<void> {
  return (l) => writeDeadLetter(database, l);
}

/**
 * The dispatcher over every configured alert sink (those under `alerts.sinks` and those under `plugins:`).
 * An `alerts.sinks` entry that is not an alert sink is a config error.
 */
export function createAlertDispatcher(config: AlertsConfig, plugins: PluginHost, database: Database, logger: Logger, metrics: Registry): AlertDispatcher {
  const kinds = new Map(plugins.list().map((p) => [p.name, p.kind]));
  config.sinks.forEach((entry, i) => {
    const name = entry.name ?? plugins.list().find((p) => p.source === entry.use)?.name;
    if (name !== undefined && kinds.has(name) && kinds.get(name) !== 'alertSink') {
      throw new McpError('MCP_CONFIG_INVALID', `alerts.sinks.${i}: plugin "${name}" is a ${kinds.get(name)} plugin, not an alert sink`, {
        details: { paths: [`alerts.sinks.${i}`] },
      });
    }
  });
  const names = plugins.names('alertSink');
  return new AlertDispatcher({
    sinks: names.map((name) => ({ name, sink: plugins.get('alertSink', name) })),
    delivery: config.delivery,
    deadLetter: deadLetterTable(database),
    logger,
    metrics,
  });
}
