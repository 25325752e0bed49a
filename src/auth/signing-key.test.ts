import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../db/client.ts';
import { authState } from '../db/schema.ts';
import { SecretBox } from '../security/secrets.ts';
import { loadSigningKey } from './signing-key.ts';

const newKey = () => randomBytes(32).toString('base64');

describe('access-token signing key in auth_state', () => {
  let db: Database;
  const dir = mkdtempSync(join(tmpdir(), 'mcp-signing-'));
  const logger = pino({ level: 'silent' });
  beforeAll(async () => {
    db = await openDatabase({ dataDir: dir, inMemory: true });
    await db.migrate();
  });
  afterAll(async () => {
    await db?.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const stored = async () => (await db.db.select().from(authState))[0]!.value;

  it('is stored as is without MCP_SECRET_KEY, sealed in place once one is set, and opens after a rotation', async () => {
    const first = await loadSigningKey(db.db, new SecretBox(), logger);
    expect(await stored()).toMatch(/^plain:/);
    const k1 = newKey();
    expect(await loadSigningKey(db.db, new SecretBox(k1), logger)).toEqual(first);
    const sealed = await stored();
    expect(sealed).toMatch(/^enc:v1:/);
    expect(sealed).not.toContain(Buffer.from(first).toString('base64'));
    // Rotated: the previous key still opens it; the same signing key comes back.
    expect(await loadSigningKey(db.db, new SecretBox(newKey(), [k1]), logger)).toEqual(first);
  });

  it('refuses to start without the key that sealed it, or with another one (MCP_CONFIG_INVALID)', async () => {
    await expect(loadSigningKey(db.db, new SecretBox(), logger)).rejects.toMatchObject({ code: 'MCP_CONFIG_INVALID' });
    await expect(loadSigningKey(db.db, new SecretBox(newKey()), logger)).rejects.toMatchObject({ code: 'MCP_CONFIG_INVALID' });
  });
});
