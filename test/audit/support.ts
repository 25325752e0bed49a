import { fileURLToPath } from 'node:url';
import type { Database } from '../../src/db/client.ts';

export const ROLE_AUTH = fileURLToPath(new URL('../support/header-auth-plugin.ts', import.meta.url));

export async function query<T = Record<string, unknown>>(database: Database, text: string): Promise<T[]> {
  return ((await database.db.execute(text as never)) as unknown as { rows: T[] }).rows;
}

export const as = (user: string, roles = 'admin', requestId?: string): Record<string, string> => ({
  'x-test-user': user,
  'x-test-roles': roles,
  ...(requestId ? { 'x-request-id': requestId } : {}),
});
