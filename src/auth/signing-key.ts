/**
 * The access-token signing key, shared by every replica through the `auth_state` table.
 *
 * With a secret key (src/security/secret-key.ts: MCP_SECRET_KEY, MCP_SECRET_KEY_FILE, or PGlite's data-dir key
 * file) the key is stored sealed by the gateway's one secret box (src/security/secrets.ts: AES-256-GCM, key id in
 * the envelope, `MCP_SECRET_KEY_PREVIOUS` still opens it): a database dump alone cannot mint tokens. Without one
 * (PostgreSQL and neither variable) the key is stored as is and a warning is logged at every start: whoever reads
 * the database can sign access tokens. A key stored as is is sealed in place at the first start with a secret
 * key; losing or changing that key makes start-up fail (MCP_CONFIG_INVALID) rather than silently signing with a
 * new one.
 */
import { randomBytes } from 'node:crypto';
import { eq } from 'drizzle-orm';
import type { Logger } from 'pino';
import type { Db } from '../db/client.ts';
import { authState } from '../db/schema.ts';
import { McpError } from '../errors.ts';
import { isEnvelope, type SecretBox } from '../security/secrets.ts';

const ROW = 'access-token-signing-key';
const PLAIN = 'plain:';

function opened(value: string, box: SecretBox): Buffer {
  if (value.startsWith(PLAIN)) return Buffer.from(value.slice(PLAIN.length), 'base64');
  if (!isEnvelope(value)) throw new McpError('MCP_CONFIG_INVALID', 'auth_state: the stored signing key is unreadable');
  if (!box.canSeal) {
    throw new McpError(
      'MCP_CONFIG_INVALID',
      'the access-token signing key is stored encrypted and the gateway has no secret key: set MCP_SECRET_KEY or MCP_SECRET_KEY_FILE (the key used before)',
    );
  }
  try {
    return Buffer.from(box.open(value), 'base64');
  } catch {
    throw new McpError(
      'MCP_CONFIG_INVALID',
      `${box.source} does not open the stored access-token signing key (was the key changed? the one used before can go in MCP_SECRET_KEY_PREVIOUS)`,
    );
  }
}

/** Reads the signing key, creating it on first use (concurrent first starts agree: insert … on conflict do nothing, then read). */
export async function loadSigningKey(db: Db, box: SecretBox, logger: Logger): Promise<Uint8Array> {
  const fresh = randomBytes(32).toString('base64');
  await db
    .insert(authState)
    .values({ key: ROW, value: box.canSeal ? box.seal(fresh) : `${PLAIN}${fresh}` })
    .onConflictDoNothing();
  const [row] = await db.select().from(authState).where(eq(authState.key, ROW));
  if (!row) throw new McpError('MCP_STORAGE_UNAVAILABLE', 'auth_state: the signing key could not be stored');
  const key = opened(row.value, box);
  if (key.length !== 32) throw new McpError('MCP_CONFIG_INVALID', 'auth_state: the stored signing key has the wrong length');
  if (row.value.startsWith(PLAIN)) {
    if (box.canSeal) {
      await db
        .update(authState)
        .set({ value: box.seal(key.toString('base64')) })
        .where(eq(authState.key, ROW));
      logger.info({ keyId: box.keyId }, 'access-token signing key sealed with the secret key');
    } else {
      logger.warn(
        'no secret key (MCP_SECRET_KEY / MCP_SECRET_KEY_FILE): the access-token signing key is stored unencrypted in the database, whoever reads it can sign access tokens',
      );
    }
  }
  return new Uint8Array(key);
}
