import { randomUUID } from 'node:crypto';
import { SecretBox } from '../security/secrets.ts';
import { and, eq, gt, inArray, isNull, sql } from 'drizzle-orm';
import type { Logger } from 'pino';
import type { Db } from '../db/client.ts';
import { apiKeys, refreshTokens, users } from '../db/schema.ts';
import { storageFailure, storageFailureReason } from '../db/storage-errors.ts';
import { McpError } from '../errors.ts';
import type { EventBus } from '../events/bus.ts';
import type { CredentialRevocation, CredentialStore, StoredApiKey, StoredUser } from '../plugin/contract.ts';
import { loadSigningKey } from './signing-key.ts';

/** How often `lastUsedAt` of used API keys is written (one UPDATE for all of them). */
const TOUCH_FLUSH_MS = 10_000;
const MAX_PENDING_TOUCHES = 10_000;

interface Bound {
  db: Db;
  events: EventBus;
  logger: Logger;
}

/**
 * The gateway's credential storage as auth plugins see it (CredentialStore in the plugin contract). Plugins are set up
 * before storage opens, so it is created unbound and `bind()` gives it the database and the event bus; calls made
 * before that wait. Revocations go out on the event bus (Redis across replicas) and come back to every listener,
 * this replica's included.
 */
export class GatewayCredentialStore implements CredentialStore {
  private bound?: Bound;
  private readonly ready: Promise<Bound>;
  private resolveReady!: (b: Bound) => void;
  private readonly listeners = new Set<(r: CredentialRevocation) => void>();
  private readonly touched = new Set<string>();
  private flushTimer?: NodeJS.Timeout;
  private key?: Promise<Uint8Array>;
  private readonly stop = new AbortController();

  constructor(private readonly box: SecretBox = SecretBox.fromEnv()) {
    this.ready = new Promise((r) => (this.resolveReady = r));
  }

  bind(db: Db, events: EventBus, logger: Logger): void {
    this.bound = { db, events, logger };
    this.resolveReady(this.bound);
    void (async () => {
      for await (const r of events.subscribe('authRevocations', this.stop.signal)) {
        for (const fn of this.listeners) {
          try {
            fn(r);
          } catch (err) {
            logger.warn({ err }, 'revocation listener failed');
          }
        }
      }
    })().catch((err) => logger.warn({ err }, 'revocation subscription ended'));
    this.flushTimer = setInterval(() => void this.flushTouches(), TOUCH_FLUSH_MS);
    this.flushTimer.unref();
  }

  private async db(): Promise<Db> {
    return (this.bound ?? (await this.ready)).db;
  }

  /**
   * Runs a lookup plugins asked for. What reaches a plugin is an McpError: a storage failure as
   * MCP_STORAGE_UNAVAILABLE, anything else as MCP_INTERNAL; never the driver's error, whose
   * message holds the SQL and its parameters (a key hash, a user name), which a plugin may log.
   */
  private async query<T>(run: (db: Db) => Promise<T>): Promise<T> {
    const db = await this.db();
    try {
      return await run(db);
    } catch (err) {
      throw storageFailure(err) ?? new McpError('MCP_INTERNAL', undefined, { cause: err });
    }
  }

  /** Announces a revocation to every replica. */
  publish(r: CredentialRevocation): void {
    this.bound?.events.publish('authRevocations', r);
  }

  onRevoked(fn: (r: CredentialRevocation) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  async userByName(username: string): Promise<StoredUser | undefined> {
    if (username.length > 128) return undefined;
    const [u] = await this.query((db) => db.select().from(users).where(eq(users.username, username)));
    return u && storedUser(u);
  }

  async userById(id: string): Promise<StoredUser | undefined> {
    if (id.length > 128) return undefined;
    const [u] = await this.query((db) => db.select().from(users).where(eq(users.id, id)));
    return u && storedUser(u);
  }

  async apiKeyByHash(sha256: string): Promise<StoredApiKey | undefined> {
    const [k] = await this.query((db) => db.select().from(apiKeys).where(eq(apiKeys.keyHash, sha256)));
    return k && { id: k.id, name: k.name, roles: k.roles, models: k.models ?? null, worker: k.worker, expiresAt: k.expiresAt, revokedAt: k.revokedAt };
  }

  touchApiKey(id: string): void {
    if (this.touched.size < MAX_PENDING_TOUCHES) this.touched.add(id);
  }

  /** Writes the pending `lastUsedAt` updates (every 10 s, and at shutdown). */
  async flushTouches(): Promise<void> {
    if (!this.bound || this.touched.size === 0) return;
    const ids = [...this.touched];
    this.touched.clear();
    try {
      await this.bound.db.update(apiKeys).set({ lastUsedAt: new Date() }).where(inArray(apiKeys.id, ids));
    } catch (err) {
      // Not written now, not retried: an unreachable database is logged once per outage by the storage health.
      if (storageFailure(err)) this.bound.logger.debug({ reason: storageFailureReason(err) }, 'could not record API key use: storage unavailable');
      else this.bound.logger.warn({ err }, 'could not record API key use');
    }
  }

  signingKey(): Promise<Uint8Array> {
    this.key ??= this.ready.then((b) => loadSigningKey(b.db, this.box, b.logger));
    this.key.catch(() => (this.key = undefined));
    return this.key;
  }

  async createRefreshToken(userId: string, tokenSha256: string, expiresAt: Date, familyId: string = randomUUID()): Promise<{ familyId: string }> {
    await this.query((db) => db.insert(refreshTokens).values({ id: randomUUID(), userId, familyId, tokenHash: tokenSha256, expiresAt }));
    return { familyId };
  }

  spendRefreshToken(tokenSha256: string): Promise<{ status: 'ok'; userId: string; familyId: string } | { status: 'reused' | 'invalid' }> {
    return this.query((db) => this.spend(db, tokenSha256));
  }

  private async spend(db: Db, tokenSha256: string): Promise<{ status: 'ok'; userId: string; familyId: string } | { status: 'reused' | 'invalid' }> {
    const [spent] = await db
      .update(refreshTokens)
      .set({ usedAt: new Date() })
      .where(
        and(eq(refreshTokens.tokenHash, tokenSha256), isNull(refreshTokens.usedAt), isNull(refreshTokens.revokedAt), gt(refreshTokens.expiresAt, new Date())),
      )
      .returning({ userId: refreshTokens.userId, familyId: refreshTokens.familyId });
    if (spent) return { status: 'ok', ...spent };
    const [row] = await db.select().from(refreshTokens).where(eq(refreshTokens.tokenHash, tokenSha256));
    if (row?.usedAt && !row.revokedAt) {
      await this.revokeFamily(db, row.familyId);
      return { status: 'reused' };
    }
    return { status: 'invalid' };
  }

  revokeRefreshFamily(tokenSha256: string): Promise<void> {
    return this.query(async (db) => {
      const [row] = await db.select({ familyId: refreshTokens.familyId }).from(refreshTokens).where(eq(refreshTokens.tokenHash, tokenSha256));
      if (row) await this.revokeFamily(db, row.familyId);
    });
  }

  private async revokeFamily(db: Db, familyId: string): Promise<void> {
    await db
      .update(refreshTokens)
      .set({ revokedAt: sql`now()` })
      .where(and(eq(refreshTokens.familyId, familyId), isNull(refreshTokens.revokedAt)));
    this.publish({ kind: 'session', familyId });
  }

  async close(): Promise<void> {
    this.stop.abort();
    if (this.flushTimer) clearInterval(this.flushTimer);
    await this.flushTouches();
  }
}

function storedUser(u: typeof users.$inferSelect): StoredUser {
  return { id: u.id, username: u.username, passwordHash: u.passwordHash, roles: u.roles, models: u.models ?? null, disabled: u.disabled };
}

const unavailable = () => Promise.reject(new McpError('MCP_STORAGE_UNAVAILABLE', 'no credential storage in this process'));

/** The store of a process without one (a worker): every lookup fails, nothing is ever revoked. */
export const NO_CREDENTIALS: CredentialStore = Object.freeze({
  userByName: unavailable,
  userById: unavailable,
  apiKeyByHash: unavailable,
  touchApiKey: () => {},
  signingKey: unavailable,
  createRefreshToken: unavailable,
  spendRefreshToken: unavailable,
  revokeRefreshFamily: unavailable,
  onRevoked: () => () => {},
});
