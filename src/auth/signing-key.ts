/**
 * The access-token signing key, shared by every replica through the `auth_state` table.
 *
 * With `MCP_SECRET_KEY` set, the key is stored wrapped (AES-256-GCM under a key derived from it with
 * HKDF-SHA256): a database dump alone cannot mint tokens. Without it the key is stored as is and a
 * warning is logged at every start: whoever reads the database can sign access tokens. Setting the
 * variable later wraps the stored key in place; losing or changing it makes start-up fail
 * (MCP_CONFIG_INVALID) rather than silently signing with a new key.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { eq } from 'drizzle-orm';
import type { Logger } from 'pino';
import type { Db } from '../db/client.ts';
import { authState } from '../db/schema.ts';
import { McpError } from '../errors.ts';

const ROW = 'access-token-signing-key';

function wrappingKey(secret: string): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, 'capibara-mcp', 'access-token signing key wrap v1', 32));
}

function wrap(key: Buffer, secret: string): string {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', wrappingKey(secret), iv);
  const ct = Buffer.concat([c.update(key), c.final()]);
  return `aes256gcm:${iv.toString('base64')}:${c.getAuthTag().toString('base64')}:${ct.toString('base64')}`;
}

function unwrap(value: string, secret: string | undefined): Buffer {
  if (value.startsWith('plain:')) return Buffer.from(value.slice(6), 'base64');
  const [kind, iv, tag, ct] = value.split(':');
  if (kind !== 'aes256gcm' || !iv || !tag || !ct) throw new McpError('MCP_CONFIG_INVALID', 'auth_state: the stored signing key is unreadable');
  if (!secret) throw new McpError('MCP_CONFIG_INVALID', 'the access-token signing key is stored encrypted: set MCP_SECRET_KEY (the one used before)');
  try {
    const d = createDecipheriv('aes-256-gcm', wrappingKey(secret), Buffer.from(iv, 'base64'));
    d.setAuthTag(Buffer.from(tag, 'base64'));
    return Buffer.concat([d.update(Buffer.from(ct, 'base64')), d.final()]);
  } catch {
    throw new McpError('MCP_CONFIG_INVALID', 'MCP_SECRET_KEY does not open the stored access-token signing key (was it changed?)');
  }
}

/** Reads the signing key, creating it on first use (concurrent first starts agree: insert … on conflict do nothing, then read). */
export async function loadSigningKey(db: Db, secret: string | undefined, logger: Logger): Promise<Uint8Array> {
  const fresh = randomBytes(32);
  await db
    .insert(authState)
    .values({ key: ROW, value: secret ? wrap(fresh, secret) : `plain:${fresh.toString('base64')}` })
    .onConflictDoNothing();
  const [row] = await db.select().from(authState).where(eq(authState.key, ROW));
  if (!row) throw new McpError('MCP_STORAGE_UNAVAILABLE', 'auth_state: the signing key could not be stored');
  const key = unwrap(row.value, secret);
  if (key.length !== 32) throw new McpError('MCP_CONFIG_INVALID', 'auth_state: the stored signing key has the wrong length');
  if (row.value.startsWith('plain:')) {
    if (secret) {
      await db
        .update(authState)
        .set({ value: wrap(key, secret) })
        .where(eq(authState.key, ROW));
      logger.info('access-token signing key wrapped with MCP_SECRET_KEY');
    } else {
      logger.warn('MCP_SECRET_KEY is not set: the access-token signing key is stored unencrypted in the database');
    }
  }
  return new Uint8Array(key);
}
