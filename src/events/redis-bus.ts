import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { McpError } from '../errors.ts';
import { createLocalEventBus, type EventBus, type EventMap } from './bus.ts';

const TOPICS: ReadonlyArray<keyof EventMap> = ['modelEvents', 'instanceHealth', 'workerCommands', 'authRevocations', 'scalingSignals', 'replicaPresence'];

/**
 * The event bus shared by gateway replicas: every publish goes to Redis pub/sub, and every
 * replica (this one included) delivers what Redis sends to its local subscribers. Registry
 * changes, health changes and worker commands made on one replica reach all of them.
 */
export async function createRedisEventBus(url: string, channel: string, logger: Logger): Promise<EventBus & { close(): Promise<void> }> {
  const PREFIX = `${channel}:events:`;
  const options = { lazyConnect: true, maxRetriesPerRequest: 2, connectTimeout: 5000 };
  const pub = new Redis(url, options);
  const sub = new Redis(url, options);
  for (const c of [pub, sub]) c.on('error', (err) => logger.warn({ err: err.message }, 'redis event bus error'));
  try {
    await Promise.all([pub.connect(), sub.connect()]);
    await sub.subscribe(...TOPICS.map((t) => PREFIX + t));
  } catch (err) {
    pub.disconnect();
    sub.disconnect();
    throw new McpError('MCP_STORAGE_UNAVAILABLE', `cannot connect to Redis for events (${url}): ${(err as Error).message}`, { cause: err });
  }
  const local = createLocalEventBus();
  // ioredis reconnects on its own and subscribes again; 'ready' follows each reconnection.
  const reconnected = new Set<() => void>();
  sub.on('ready', () => {
    logger.info('redis event bus connected again');
    for (const l of reconnected) l();
  });
  sub.on('message', (channel: string, message: string) => {
    const topic = channel.slice(PREFIX.length) as keyof EventMap;
    try {
      const event = JSON.parse(message) as EventMap[typeof topic] & { at?: string | Date };
      if (typeof event.at === 'string') event.at = new Date(event.at);
      local.publish(topic, event);
    } catch (err) {
      logger.warn({ err, channel }, 'unreadable event from redis');
    }
  });
  return {
    publish(topic, event) {
      pub.publish(PREFIX + topic, JSON.stringify(event)).catch((err: Error) => logger.warn({ err: err.message, topic }, 'event not published'));
    },
    subscribe: (topic, signal) => local.subscribe(topic, signal),
    onReconnect(listener, signal) {
      reconnected.add(listener);
      signal?.addEventListener('abort', () => reconnected.delete(listener), { once: true });
    },
    async close() {
      await Promise.allSettled([sub.quit(), pub.quit()]);
    },
  };
}
