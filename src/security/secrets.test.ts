import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { McpError } from '../errors.ts';
import { InstanceSecrets, SecretBox, SecretFields } from './secrets.ts';

const key = () => randomBytes(32).toString('base64');

describe('SecretBox', () => {
  it('seals with the current key id and opens with current or previous keys (rotation)', () => {
    const k1 = key();
    const k2 = key();
    const old = new SecretBox(k1);
    const sealed = old.seal('sk-123');
    expect(sealed).toMatch(new RegExp(`^enc:v1:${old.keyId}:`));
    expect(sealed).not.toContain('sk-123');
    const rotated = new SecretBox(k2, [k1]);
    expect(rotated.open(sealed)).toBe('sk-123');
    expect(rotated.open(rotated.seal('x'))).toBe('x');
    expect(() => new SecretBox(k2).open(sealed)).toThrow(/not configured/);
  });

  it('detects tampering and refuses keys that are not 32 bytes', () => {
    const box = new SecretBox(key());
    const sealed = box.seal('secret');
    const tampered = sealed.slice(0, -2) + (sealed.endsWith('A') ? 'B' : 'A') + sealed.slice(-1);
    expect(() => box.open(tampered)).toThrow(/does not decrypt/);
    expect(() => new SecretBox(Buffer.alloc(16).toString('base64'))).toThrow(McpError);
  });
});

describe('SecretFields', () => {
  const f = new SecretFields(['myCustomKey']);
  it('knows the built-in names, secret-looking headers, extra keys and declared paths, not token counts', () => {
    for (const p of [
      ['apiKey'],
      ['api_key'],
      ['token'],
      ['clientSecret'],
      ['password'],
      ['headers', 'Authorization'],
      ['headers', 'X-Api-Key'],
      ['headers', 'x-auth-token'],
      ['my_custom_key'],
    ]) {
      expect(f.isSecret(p), p.join('.')).toBe(true);
    }
    for (const p of [['model'], ['maxTokens'], ['max_tokens'], ['headers', 'x-trace'], ['eosToken'], ['tasks']]) expect(f.isSecret(p), p.join('.')).toBe(false);
    expect(f.isSecret(['auth', 'pin'], ['auth.pin'])).toBe(true);
  });
});

describe('InstanceSecrets', () => {
  const secrets = new InstanceSecrets({ box: new SecretBox(key()), fileRoots: ['/run/secrets'], env: { K: 'from-env' } });
  it('seals literals, keeps references, resolves both, redacts literals only', async () => {
    const stored = secrets.seal({ apiKey: 'sk-1', token: 'env:K', headers: { authorization: 'Bearer x', accept: 'json' }, model: 'm' }, [], 'api', 'options');
    expect(JSON.stringify(stored)).not.toMatch(/sk-1|Bearer x/);
    expect(stored.token).toBe('env:K');
    expect(await secrets.resolve(stored, [])).toEqual({
      apiKey: 'sk-1',
      token: 'from-env',
      headers: { authorization: 'Bearer x', accept: 'json' },
      model: 'm',
    });
    expect(secrets.redact(stored)).toEqual({ apiKey: '[redacted]', token: 'env:K', headers: { authorization: '[redacted]', accept: 'json' }, model: 'm' });
  });

  it('takes file: references from the API only under the allowed folders; from the config anywhere', () => {
    expect(() => secrets.seal({ apiKey: 'file:/etc/shadow' }, [], 'api', 'options')).toThrow(/fileRoots/);
    expect(() => secrets.seal({ apiKey: 'file:/run/secrets/../../etc/shadow' }, [], 'api', 'options')).toThrow(/fileRoots/);
    expect(secrets.seal({ apiKey: 'file:/run/secrets/k' }, [], 'api', 'options')).toEqual({ apiKey: 'file:/run/secrets/k' });
    expect(secrets.seal({ apiKey: 'file:/etc/k' }, [], 'config', 'options')).toEqual({ apiKey: 'file:/etc/k' });
  });

  it('refuses literals when there is no key, naming the option', () => {
    const none = new InstanceSecrets({ box: new SecretBox() });
    expect(() => none.seal({ headers: { Authorization: 'Bearer x' } }, [], 'config', 'options')).toThrow(/options\.headers\.Authorization: .*MCP_SECRET_KEY/);
    expect(none.seal({ apiKey: 'env:OPENAI_KEY' }, [], 'api', 'options')).toEqual({ apiKey: 'env:OPENAI_KEY' });
  });
});
