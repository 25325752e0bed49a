import { randomBytes, randomUUID } from 'node:crypto';
import type { CredentialRevocation, CredentialStore, StoredApiKey, StoredUser } from '../plugin/contract.ts';

/**
 * An in-memory CredentialStore for testing an auth plugin on its own (`testPluginContext` uses one):
 * add users and keys, revoke them, and the plugin sees it as it would the gateway's store.
 */
export class MemoryCredentialStore implements CredentialStore {
  readonly users = new Map<string, StoredUser>();
  /** SHA-256 → key. */
  readonly apiKeys = new Map<string, StoredApiKey>();
  readonly touched: string[] = [];
  /** Calls made to the store that would be SQL in the gateway (tests assert the hot path makes none). */
  lookups = 0;
  private readonly key = new Uint8Array(randomBytes(32));
  private readonly tokens = new Map<string, { userId: string; familyId: string; expiresAt: Date; used: boolean; revoked: boolean }>();
  private readonly listeners = new Set<(r: CredentialRevocation) => void>();

  async userByName(username: string) {
    this.lookups++;
    return [...this.users.values()].find((u) => u.username === username);
  }
  async userById(id: string) {
    this.lookups++;
    return this.users.get(id);
  }
  async apiKeyByHash(sha256: string) {
    this.lookups++;
    return this.apiKeys.get(sha256);
  }
  touchApiKey(id: string) {
    this.touched.push(id);
  }
  async signingKey() {
    return this.key;
  }
  async createRefreshToken(userId: string, tokenSha256: string, expiresAt: Date, familyId: string = randomUUID()) {
    this.tokens.set(tokenSha256, { userId, familyId, expiresAt, used: false, revoked: false });
    return { familyId };
  }
  async spendRefreshToken(tokenSha256: string) {
    const t = this.tokens.get(tokenSha256);
    if (!t || t.revoked || t.expiresAt.getTime() <= Date.now()) return { status: 'invalid' as const };
    if (t.used) {
      this.revokeFamily(t.familyId);
      return { status: 'reused' as const };
    }
    t.used = true;
    return { status: 'ok' as const, userId: t.userId, familyId: t.familyId };
  }
  async revokeRefreshFamily(tokenSha256: string) {
    const t = this.tokens.get(tokenSha256);
    if (t) this.revokeFamily(t.familyId);
  }
  private revokeFamily(familyId: string) {
    for (const t of this.tokens.values()) if (t.familyId === familyId) t.revoked = true;
    this.revoke({ kind: 'session', familyId });
  }
  onRevoked(fn: (r: CredentialRevocation) => void) {
    this.listeners.add(fn);
    return () => void this.listeners.delete(fn);
  }
  /** Announces a revocation to the plugin, as the gateway does on every replica. */
  revoke(r: CredentialRevocation): void {
    for (const fn of this.listeners) fn(r);
  }
}
