import { describe, expect, it } from 'vitest';
import { McpError } from '../errors.ts';
import { AddressPolicy, checkEndpoint, type LookupFunction } from './address-policy.ts';

const dev = new AddressPolicy();
const strict = new AddressPolicy({ mode: 'strict', allowHosts: ['vllm.internal', '*.models.internal'], allowCidrs: ['10.20.0.0/16', 'fd00:1::/64'] });

describe('AddressPolicy', () => {
  it('always refuses link-local, metadata, unspecified, broadcast and multicast, in any spelling', () => {
    for (const p of [dev, strict]) {
      expect(p.checkAddress('169.254.169.254', true)).toBe('metadata');
      expect(p.checkAddress('::ffff:169.254.169.254', true)).toBe('metadata');
      expect(p.checkAddress('::ffff:a9fe:a9fe', true)).toBe('metadata');
      expect(p.checkAddress('64:ff9b::169.254.169.254', true)).toBe('metadata');
      expect(p.checkAddress('fd00:ec2::254', true)).toBe('metadata');
      expect(p.checkAddress('100.100.100.200', true)).toBe('metadata');
      expect(p.checkAddress('169.254.1.1', true)).toBe('link-local');
      expect(p.checkAddress('fe80::1', true)).toBe('link-local');
      expect(p.checkAddress('0.0.0.0', true)).toBe('unspecified');
      expect(p.checkAddress('0.1.2.3', true)).toBe('unspecified');
      expect(p.checkAddress('::', true)).toBe('unspecified');
      expect(p.checkAddress('255.255.255.255', true)).toBe('broadcast');
      expect(p.checkAddress('224.0.0.1', true)).toBe('multicast');
      expect(p.checkName('metadata.google.internal')).toBe('metadata');
      expect(p.checkName('METADATA.GOOGLE.INTERNAL.')).toBe('metadata');
    }
  });

  it('development mode accepts loopback, private and public addresses', () => {
    for (const a of ['127.0.0.1', '::1', '10.1.2.3', '192.168.1.1', '172.16.0.5', 'fd12::1', '8.8.8.8', '100.64.0.1'])
      expect(dev.checkAddress(a, false)).toBeUndefined();
    expect(dev.checkName('anything.example')).toBeUndefined();
  });

  it('strict mode accepts listed hosts and ranges only, IPv4-mapped IPv6 included', () => {
    expect(strict.checkAddress('10.20.3.4', false)).toBeUndefined();
    expect(strict.checkAddress('::ffff:10.20.3.4', false)).toBeUndefined();
    expect(strict.checkAddress('fd00:1::9', false)).toBeUndefined();
    expect(strict.checkAddress('10.21.0.1', false)).toBe('not-allow-listed');
    expect(strict.checkAddress('127.0.0.1', false)).toBe('not-allow-listed');
    expect(strict.checkAddress('::ffff:127.0.0.1', false)).toBe('not-allow-listed');
    // a listed name may resolve anywhere but the always-refused ranges
    expect(strict.checkAddress('192.168.9.9', true)).toBeUndefined();
    expect(strict.checkAddress('169.254.169.254', true)).toBe('metadata');
    expect(strict.checkName('a.models.internal')).toBeUndefined();
    expect(new AddressPolicy({ mode: 'strict', allowHosts: ['vllm.internal'] }).checkName('other.internal')).toBe('not-allow-listed');
  });

  it('its lookup refuses when any resolved address is refused, with a message that names neither host nor address', async () => {
    const answers: LookupFunction = (_h, options, cb) =>
      options.all
        ? cb(null, [
            { address: '10.0.0.1', family: 4 },
            { address: '169.254.169.254', family: 4 },
          ])
        : cb(null, '169.254.169.254', 4);
    const p = new AddressPolicy({ lookup: answers });
    for (const all of [true, false]) {
      const err = await new Promise<unknown>((resolve) => p.lookup('rebind.example', { all }, (e) => resolve(e)));
      expect(err).toBeInstanceOf(McpError);
      expect((err as McpError).code).toBe('MCP_UPSTREAM_FORBIDDEN');
      expect((err as McpError).message).not.toMatch(/rebind|169/);
    }
  });
});

describe('checkEndpoint', () => {
  const ok =
    (endpoint: string, source: 'api' | 'config' = 'api', p = dev) =>
    () =>
      checkEndpoint(p, endpoint, source, 'endpoint');
  it('accepts http(s) URLs and, from the config file only, paths and file: URLs', () => {
    expect(ok('http://127.0.0.1:8000/v1')).not.toThrow();
    expect(ok('https://api.openai.com/v1')).not.toThrow();
    expect(ok('/models/mini', 'config')).not.toThrow();
    expect(ok('file:///models/mini/model.json', 'config')).not.toThrow();
    expect(ok('C:\\models\\mini', 'config')).not.toThrow();
    for (const e of ['/models/mini', 'models/mini', 'file:///etc/passwd', 'C:\\models', 'ftp://h/x', 'gopher://h', 'javascript:alert(1)', 'http://u:p@h/']) {
      expect(ok(e), e).toThrow(McpError);
    }
    expect(ok('http://10.20.1.1/v1', 'api', strict)).not.toThrow();
    expect(ok('http://127.0.0.1/v1', 'api', strict)).toThrow(/not allowed by the gateway address policy/);
  });
});
