/**
 * `auth.enabled: false` is for local experiments: refused on a non-loopback bind, warned about at
 * every start, and then every request is the anonymous admin.
 */
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { isLoopbackHost } from '../../src/auth/disabled-guard.ts';
import { configSchema } from '../../src/config/schema.ts';
import { createGateway } from '../../src/gateway.ts';

const LEAN = { defaultPlugins: false, plugins: [{ use: 'p2c-ewma' }], demo: { enabled: false }, storage: { inMemory: true } };

describe('auth.enabled: false', () => {
  it.each(['0.0.0.0', '::', '192.168.1.10', 'gateway.example.com'])('is refused (MCP_CONFIG_INVALID) on server.host %s', async (host) => {
    const config = configSchema.parse({ ...LEAN, server: { host, port: 0 }, auth: { enabled: false } });
    await expect(createGateway({ config, logger: pino({ level: 'silent' }) })).rejects.toMatchObject({ code: 'MCP_CONFIG_INVALID' });
  });

  it('tells loopback addresses apart', () => {
    for (const h of ['127.0.0.1', '127.8.9.1', '::1', '[::1]', 'localhost', '::ffff:127.0.0.1']) expect(isLoopbackHost(h), h).toBe(true);
    for (const h of ['0.0.0.0', '::', '10.0.0.1', 'localhost.evil.test', '']) expect(isLoopbackHost(h), h).toBe(false);
  });

  it('on loopback: starts with a warning, and every request is the anonymous admin', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (l: string) => void lines.push(l) });
    const config = configSchema.parse({ ...LEAN, server: { host: '127.0.0.1', port: 0 }, auth: { enabled: false } });
    const gw = await createGateway({ config, logger });
    try {
      expect(lines.some((l) => l.includes('"level":40') && l.includes('auth is DISABLED'))).toBe(true);
      const r = await fetch(`${gw.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: '{ me { id roles } }' }),
      });
      expect(await r.json()).toEqual({ data: { me: { id: 'anonymous', roles: ['admin'] } } });
      expect((await fetch(`${gw.url}/v1/models`)).status).toBe(200);
    } finally {
      await gw.close();
    }
  });
});
