/**
 * A remote JSON Web Key Set with a cache and a refetch cooldown. Unlike jose's createRemoteJWKSet,
 * the cooldown counts every fetch attempt (failed ones too), so a flood of tokens with unknown `kid`s
 * — or a key server that answers 500 — causes at most one fetch per cooldown; and when a refresh
 * fails, the keys last fetched keep working (a key server outage does not lock out known keys).
 * The `kid` is only ever compared with the fetched keys: it never becomes part of a URL or a path.
 */
import { request } from 'undici';
import { createLocalJWKSet, errors, type JSONWebKeySet, type JWSHeaderParameters, type FlattenedJWSInput } from 'jose';
import { McpError } from '../errors.ts';
import { readBody } from '../upstream/client.ts';

export interface JwksOptions {
  url: string;
  /** Minimum time between two fetch attempts (an unknown `kid`, a retry after a failure), ms; 5 s at most while no keys were ever fetched. */
  cooldownMs: number;
  /** Keys older than this are refreshed (the old ones stay in use if the refresh fails), ms. */
  maxAgeMs: number;
  /** Timeout of one fetch, ms. */
  timeoutMs: number;
  /** Largest key set accepted, bytes. */
  maxBytes: number;
  /** Receives a short account of a failed fetch (never a token). */
  onFetchError?(message: string): void;
  /** Called after every fetch attempt (metrics). */
  onFetch?(ok: boolean): void;
}

/** Retry interval while no key set was ever fetched. */
const NO_KEYS_RETRY_MS = 5000;

type LocalSet = ReturnType<typeof createLocalJWKSet>;

export class RemoteKeySet {
  private local: LocalSet | undefined;
  private fetchedAt = Number.NEGATIVE_INFINITY;
  private attemptedAt = Number.NEGATIVE_INFINITY;
  private pending: Promise<void> | undefined;
  /** JWKS fetches started (for tests and metrics). */
  fetches = 0;

  constructor(private readonly opts: JwksOptions) {}

  /** The jose key resolver for jwtVerify. */
  readonly getKey = async (header: JWSHeaderParameters, token: FlattenedJWSInput) => {
    const now = Date.now();
    if (this.local === undefined || now - this.fetchedAt > this.opts.maxAgeMs) await this.refresh(now);
    if (this.local === undefined) {
      throw new McpError('MCP_UPSTREAM_UNAVAILABLE', 'the identity provider key set (JWKS) could not be fetched; retry later', {
        status: 503,
        retryable: true,
      });
    }
    try {
      return await this.local(header, token);
    } catch (err) {
      if (!(err instanceof errors.JWKSNoMatchingKey)) throw err;
      // An unknown kid: maybe the keys were rotated. Refetch, at most once per cooldown.
      if (!(await this.refresh(Date.now()))) throw err;
      return this.local(header, token);
    }
  };

  /** Fetches unless an attempt started within the cooldown; concurrent callers share one fetch. True when a fetch ran and succeeded. */
  private async refresh(now: number): Promise<boolean> {
    if (this.pending) {
      await this.pending;
      return true;
    }
    // Without any keys yet, retry sooner (a failed first fetch must not lock everyone out for a whole cooldown).
    const wait = this.local === undefined ? Math.min(this.opts.cooldownMs, NO_KEYS_RETRY_MS) : this.opts.cooldownMs;
    if (now - this.attemptedAt < wait) return false;
    this.attemptedAt = now;
    let ok = false;
    this.pending = this.fetch()
      .then((set) => {
        this.local = createLocalJWKSet(set);
        this.fetchedAt = Date.now();
        ok = true;
        this.opts.onFetch?.(true);
      })
      .catch((err: unknown) => {
        this.opts.onFetch?.(false);
        this.opts.onFetchError?.((err as Error).message);
      })
      .finally(() => {
        this.pending = undefined;
      });
    await this.pending;
    return ok;
  }

  private async fetch(): Promise<JSONWebKeySet> {
    this.fetches++;
    const res = await request(this.opts.url, {
      method: 'GET',
      headers: { accept: 'application/json, application/jwk-set+json' },
      signal: AbortSignal.timeout(this.opts.timeoutMs),
      headersTimeout: this.opts.timeoutMs,
      bodyTimeout: this.opts.timeoutMs,
    });
    if (res.statusCode !== 200) {
      await res.body.dump().catch(() => undefined);
      throw new Error(`JWKS ${this.opts.url} answered HTTP ${res.statusCode}`);
    }
    const set = JSON.parse(await readBody(res.body, this.opts.maxBytes)) as JSONWebKeySet;
    if (!set || !Array.isArray(set.keys)) throw new Error(`JWKS ${this.opts.url}: no "keys" array`);
    return set;
  }
}
