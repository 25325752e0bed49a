import { randomBytes, randomUUID } from 'node:crypto';
import { count } from 'drizzle-orm';
import type { Db } from '../db/client.ts';
import { users } from '../db/schema.ts';
import { McpError } from '../errors.ts';
import { hashPassword } from '../sdk/password.ts';
import { PASSWORD_MAX, PASSWORD_MIN } from './password-policy.ts';

export const FIRST_ADMIN = 'admin';

/**
 * First start: with an empty users table, creates `admin` (role admin) with `password` (MCP_ADMIN_PASSWORD) or a
 * generated one, returned so the caller can show it once. Only the scrypt hash is stored. Replicas starting together
 * on one database create one admin: the user name is unique and the insert does nothing on conflict.
 */
export async function ensureFirstAdmin(db: Db, password: string | undefined): Promise<{ created: boolean; generatedPassword?: string }> {
  const [{ n } = { n: 0 }] = await db.select({ n: count() }).from(users);
  if (n > 0) return { created: false };
  if (password !== undefined && (password.length < PASSWORD_MIN || password.length > PASSWORD_MAX)) {
    throw new McpError('MCP_CONFIG_INVALID', `MCP_ADMIN_PASSWORD: ${PASSWORD_MIN} to ${PASSWORD_MAX} characters`);
  }
  const chosen = password ?? randomBytes(18).toString('base64url');
  const rows = await db
    .insert(users)
    .values({ id: randomUUID(), username: FIRST_ADMIN, passwordHash: await hashPassword(chosen), roles: ['admin'] })
    .onConflictDoNothing()
    .returning({ id: users.id });
  if (!rows.length) return { created: false };
  return password === undefined ? { created: true, generatedPassword: chosen } : { created: true };
}
