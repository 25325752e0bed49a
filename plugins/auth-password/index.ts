/**
 * `password` auth: users stored by the gateway (`users` table, scrypt hashes) sign in with `login`
 * and get a short-lived access token (a JWT, HS256, issuer and audience pinned, signed with a key
 * every replica shares) and a rotating refresh token (only its SHA-256 is stored; spending it returns
 * a new one; reusing a spent one revokes the whole session). Requests then carry
 * `Authorization: Bearer <access token>`; verifying it needs no database round trip.
 */
import { createHash, randomBytes } from 'node:crypto';
import { SignJWT, decodeJwt, jwtVerify } from 'jose';
import { z } from 'zod';
import { McpError, definePlugin, type AuthRequest, type CredentialStore, type Principal, type StoredUser, type TokenSet } from 'capibara-mcp';
import { hashPassword, verifyPassword } from 'capibara-mcp/sdk';

export const REFRESH_PREFIX = 'mcp_rt_';
const REFRESH_SHAPE = /^mcp_rt_[A-Za-z0-9_-]{43}$/;
const JWT_SHAPE = /^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
/** Longest credential looked at: a bigger header is not ours (and is not hashed or parsed). */
const MAX_TOKEN = 8192;

export const passwordOptions = z
  .strictObject({
    /** Lifetime of an access token, seconds. */
    accessTokenTtlSeconds: z.number().int().min(30).max(86_400).default(900),
    /** Lifetime of a refresh token, seconds (each refresh starts a new one). */
    refreshTokenTtlSeconds: z
      .number()
      .int()
      .min(60)
      .max(365 * 86_400)
      .default(14 * 86_400),
    /** `iss` and `aud` of the access tokens (checked on every request). */
    issuer: z.string().min(1).max(200).default('capibara-mcp'),
    audience: z.string().min(1).max(200).default('capibara-mcp'),
  })
  .prefault({});
export type PasswordOptions = z.output<typeof passwordOptions>;

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
const wrongPassword = () => new McpError('MCP_UNAUTHENTICATED', 'invalid username or password');
const badRefresh = (why = 'invalid or expired refresh token') => new McpError('MCP_UNAUTHENTICATED', why);

function bearer(req: AuthRequest): string | undefined {
  const auth = req.headers.authorization;
  if (typeof auth !== 'string' || auth.length > MAX_TOKEN + 7 || auth.slice(0, 7).toLowerCase() !== 'bearer ') return undefined;
  return auth.slice(7).trim();
}

/**
 * Revocations seen on any replica: sessions (logout, refresh-token reuse) and users (disabled, deleted, roles changed).
 * An access token issued before its user's or session's revocation is refused; entries are forgotten once every token
 * they could refuse has expired.
 */
class Revocations {
  private readonly sessions = new Map<string, number>();
  private readonly users = new Map<string, number>();
  constructor(private readonly ttlMs: number) {}

  add(map: 'sessions' | 'users', id: string, at = Date.now()): void {
    const m = this[map];
    m.set(id, Math.max(at, m.get(id) ?? 0));
    if (m.size > 1000) for (const [k, at] of m) if (at < Date.now() - this.ttlMs - 60_000) m.delete(k);
  }

  refuses(userId: string, sessionId: string | undefined, issuedAtMs: number): boolean {
    if (sessionId !== undefined && this.sessions.has(sessionId)) return true;
    const at = this.users.get(userId);
    return at !== undefined && issuedAtMs <= at;
  }
}

export default definePlugin({
  name: 'password',
  kind: 'auth',
  apiVersion: '^1.0.0',
  description: 'Users with scrypt-hashed passwords: login → short-lived access JWT + rotating refresh token.',
  options: passwordOptions,
  async setup(ctx, opts) {
    const store: CredentialStore = ctx.credentials;
    const ttlMs = opts.accessTokenTtlSeconds * 1000;
    const revoked = new Revocations(ttlMs);
    ctx.onClose(
      store.onRevoked((r) => {
        if (r.kind === 'session') revoked.add('sessions', r.familyId);
        else if (r.kind === 'user') revoked.add('users', r.id, r.at);
      }),
    );
    // Compared against for unknown users, so a wrong name costs the same time as a wrong password.
    const dummyHash = await hashPassword(randomBytes(16).toString('hex'));

    async function issue(user: StoredUser, familyId?: string): Promise<TokenSet> {
      const refreshToken = `${REFRESH_PREFIX}${randomBytes(32).toString('base64url')}`;
      const session = await store.createRefreshToken(user.id, sha256(refreshToken), new Date(Date.now() + opts.refreshTokenTtlSeconds * 1000), familyId);
      const now = Date.now();
      const accessToken = await new SignJWT({
        name: user.username,
        roles: user.roles,
        ...(user.models ? { models: user.models } : {}),
        sid: session.familyId,
        iat_ms: now,
      })
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
        .setIssuer(opts.issuer)
        .setAudience(opts.audience)
        .setSubject(user.id)
        .setIssuedAt(Math.floor(now / 1000))
        .setExpirationTime(Math.floor(now / 1000) + opts.accessTokenTtlSeconds)
        .sign(await store.signingKey());
      return { accessToken, refreshToken, expiresIn: opts.accessTokenTtlSeconds, principal: principalOf(user, now + ttlMs) };
    }

    function principalOf(user: Pick<StoredUser, 'id' | 'username' | 'roles' | 'models'>, expiresAt: number): Principal {
      return Object.freeze({
        id: user.id,
        via: ctx.name,
        roles: [...user.roles],
        ...(user.models ? { models: Object.freeze([...user.models]) } : {}),
        expiresAt,
        claims: { username: user.username },
      }) as Principal;
    }

    return {
      async authenticate(req) {
        const token = bearer(req);
        if (!token || !JWT_SHAPE.test(token)) return null;
        let iss: unknown;
        try {
          iss = decodeJwt(token).iss;
        } catch {
          return null;
        }
        // Another issuer's JWT is left to the next strategy (jwt, auth0, …).
        if (iss !== opts.issuer) return null;
        let claims;
        try {
          ({ payload: claims } = await jwtVerify(token, await store.signingKey(), {
            algorithms: ['HS256'],
            issuer: opts.issuer,
            audience: opts.audience,
            requiredClaims: ['sub', 'exp', 'iat'],
          }));
        } catch (err) {
          if (err instanceof McpError) throw err;
          throw new McpError('MCP_UNAUTHENTICATED', 'invalid or expired access token');
        }
        const sub = String(claims.sub);
        const issuedAtMs = typeof claims.iat_ms === 'number' ? claims.iat_ms : (claims.iat ?? 0) * 1000;
        if (revoked.refuses(sub, typeof claims.sid === 'string' ? claims.sid : undefined, issuedAtMs)) {
          throw new McpError('MCP_UNAUTHENTICATED', 'the session was ended; sign in again');
        }
        const roles = Array.isArray(claims.roles) ? claims.roles.filter((r): r is string => typeof r === 'string') : [];
        const models = Array.isArray(claims.models) ? claims.models.filter((m): m is string => typeof m === 'string') : null;
        return principalOf({ id: sub, username: String(claims.name ?? sub), roles, models }, (claims.exp ?? 0) * 1000);
      },
      sessions: {
        async login(username, password) {
          if (username.length > 128 || password.length > 1024) throw wrongPassword();
          const user = await store.userByName(username);
          const ok = await verifyPassword(password, user?.passwordHash ?? dummyHash);
          if (!user || !ok || user.disabled) throw wrongPassword();
          return issue(user);
        },
        async refresh(refreshToken) {
          if (!REFRESH_SHAPE.test(refreshToken)) throw badRefresh();
          const spent = await store.spendRefreshToken(sha256(refreshToken));
          if (spent.status === 'reused') throw badRefresh('refresh token already used: the session was revoked; sign in again');
          if (spent.status !== 'ok') throw badRefresh();
          const user = await store.userById(spent.userId);
          if (!user || user.disabled) throw badRefresh();
          return issue(user, spent.familyId);
        },
        async logout(refreshToken) {
          if (REFRESH_SHAPE.test(refreshToken)) await store.revokeRefreshFamily(sha256(refreshToken));
        },
      },
    };
  },
});
