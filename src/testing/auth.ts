/**
 * Auth strategy conformance suite. Third-party auth plugin authors run it from their own tests (vitest):
 *
 *   import { describeAuthConformance } from 'capibara-mcp/testing';
 *   import plugin from '../index.js';
 *
 *   describeAuthConformance('my-jwt', {
 *     plugin,                                    // or a path / package name, loaded as the gateway does
 *     options: { issuer: 'https://issuer.test', jwks: { keys: [publicJwk] } },
 *     none: [{ headers: { 'x-other': '1' }, entry: 'rest' }],
 *     mine: [{ request: { headers: { authorization: `Bearer ${goodToken}` }, entry: 'graphql' }, id: 'user-1', roles: ['infer'] }],
 *     invalid: [{ headers: { authorization: `Bearer ${expiredToken}` }, entry: 'rest' }],
 *     foreign: [{ headers: { authorization: 'Bearer mcp_sk_…' }, entry: 'rest' }],   // another strategy's credential
 *   });
 *
 * The fixture (or a function returning it, e.g. after starting a JWKS server) gives requests of
 * four kinds: `none` (no credentials this strategy understands: authenticate returns null, so the
 * next strategy may try), `mine` (valid: a Principal with the expected id, `via` = the configured
 * plugin name, roles; `models` a list of strings and `expiresAt` epoch ms, when present), `invalid`
 * (this strategy's kind of credential, but wrong: McpError
 * MCP_UNAUTHENTICATED, 401), and optionally `foreign` (another strategy's credential: null, not a
 * throw). The suite sets the plugin up as the host does, under a configured name that differs from
 * the plugin's own, and also checks: nothing but McpError is ever thrown (random and mutated
 * requests, fast-check); an error never repeats the credential presented; many calls complete (it
 * runs on every request); concurrent calls agree with sequential ones.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ERROR_CODES, McpError } from '../errors.ts';
import type { AuthRequest, AuthStrategy, CredentialStore } from '../plugin/contract.ts';
import type { Principal } from '../inference/types.ts';
import { describeValue, settle, setUpPlugin, within, type PluginHarness, type PluginUnderTest } from './plugin-harness.ts';
import { listenOnLoopback } from './loopback-server.ts';

export interface AuthConformanceFixture {
  /**
   * The plugin: its definition (the module's default export), or a config `use:` the gateway's
   * loader resolves (a package name, or a path from the working folder).
   */
  plugin: PluginUnderTest<'auth'>;
  /** Plugin options as written in the config; validated by the plugin's schema like the host does. */
  options?: unknown;
  /** The name the plugin is configured under (`ctx.name`, expected as `via`); default `<plugin name>-under-test`. */
  configuredName?: string;
  /** Requests without credentials this strategy understands (at least one): authenticate returns null. */
  none: AuthRequest[];
  /** Requests with valid credentials, the principal id each must give, and its roles when the test knows them. */
  mine: Array<{ request: AuthRequest; id: string; roles?: string[] }>;
  /** Requests with this strategy's kind of credential, but wrong (unknown, revoked, expired, malformed): MCP_UNAUTHENTICATED. */
  invalid: AuthRequest[];
  /** Requests with another strategy's credential (e.g. a JWT for an API-key plugin): null, not a throw. */
  foreign?: AuthRequest[];
  /** More strings no error may contain (the suite already looks for every header value presented). */
  secrets?: string[];
  /** The credential store the plugin gets (`ctx.credentials`); default an empty MemoryCredentialStore. */
  credentials?: CredentialStore;
  /** Called once after the suite. */
  close?(): unknown;
}

export interface AuthConformanceOptions {
  /** Calls in the "runs on every request" check (default 2000). */
  calls?: number;
  /** Bound for those calls, ms: only catches a strategy far too slow for the request path (default 60000). */
  callsBudgetMs?: number;
  /** fast-check runs per property (default 200). */
  numRuns?: number;
}

const ENTRIES = ['graphql', 'rest', 'openai', 'kserve', 'websocket'];

type Outcome = { kind: 'principal'; principal: Principal } | { kind: 'null' } | { kind: 'error'; error: unknown };

async function authenticate(strategy: AuthStrategy, request: AuthRequest): Promise<Outcome> {
  const r = await settle(async () => strategy.authenticate(request));
  if (!r.ok) return { kind: 'error', error: r.error };
  return r.value === null ? { kind: 'null' } : { kind: 'principal', principal: r.value };
}

/** The strings a request presents that no error may repeat: header values, and the token after an auth scheme. */
function presented(request: AuthRequest, extra: readonly string[]): string[] {
  const out = new Set<string>(extra.filter((s) => s.length >= 6));
  for (const v of Object.values(request.headers)) {
    if (typeof v !== 'string') continue;
    const value = v.trim();
    if (value.length >= 8 && /[A-Za-z0-9]/.test(value)) out.add(value);
    const token = /^\S+\s+(\S{8,})/.exec(value)?.[1];
    if (token) out.add(token);
  }
  return [...out];
}

function describeOutcome(o: Outcome): string {
  return o.kind === 'principal' ? `principal ${describeValue(o.principal)}` : o.kind === 'null' ? 'null' : `a throw: ${describeValue(o.error)}`;
}

/** Defines the auth conformance suite (call it at the top level of a test file). */
export function describeAuthConformance(
  name: string,
  fixture: AuthConformanceFixture | (() => AuthConformanceFixture | Promise<AuthConformanceFixture>),
  options: AuthConformanceOptions = {},
): void {
  const calls = options.calls ?? 2000;
  const callsBudgetMs = options.callsBudgetMs ?? 60_000;
  const numRuns = options.numRuns ?? 200;
  const testTimeout = Math.max(60_000, callsBudgetMs * 2);

  describe(`auth conformance: ${name}`, () => {
    let fx: AuthConformanceFixture;
    let harness: PluginHarness<'auth'> | undefined;
    let strategy: AuthStrategy;
    let via: string;

    beforeAll(async () => {
      fx = typeof fixture === 'function' ? await fixture() : fixture;
      harness = await setUpPlugin('auth', fx.plugin, fx.options, fx.configuredName ?? ((plugin) => `${plugin}-under-test`), fx.credentials);
      strategy = harness.capability;
      via = harness.name;
    }, 60_000);

    afterAll(async () => {
      await harness?.close();
      await fx?.close?.();
    }, 60_000);

    /** Every throw is an McpError with a known code; a refusal of credentials never repeats them. */
    const expectSafeError = (error: unknown, request: AuthRequest, what: string): McpError => {
      expect(error instanceof McpError, `${what}: threw ${describeValue(error)}, not an McpError (the gateway masks it as MCP_INTERNAL)`).toBe(true);
      const e = error as McpError;
      expect(Object.prototype.hasOwnProperty.call(ERROR_CODES, e.code), `${what}: code ${String(e.code)} is not in ERROR_CODES`).toBe(true);
      const shown = `${e.message}\n${JSON.stringify(e.details ?? {})}`;
      for (const secret of presented(request, fx.secrets ?? [])) {
        expect(shown.includes(secret), `${what}: the error repeats the credential presented (${e.message})`).toBe(false);
      }
      return e;
    };

    const expectPrincipal = (o: Outcome, what: string): Principal => {
      expect(o.kind, `${what}: expected a principal, got ${describeOutcome(o)}`).toBe('principal');
      const p = (o as { principal: Principal }).principal;
      expect(typeof p.id === 'string' && p.id !== '', `${what}: principal id ${describeValue(p.id)}`).toBe(true);
      expect(p.via, `${what}: via must be the plugin's configured name (ctx.name)`).toBe(via);
      expect(Array.isArray(p.roles) && p.roles.every((r) => typeof r === 'string'), `${what}: roles ${describeValue(p.roles)}`).toBe(true);
      if (p.claims !== undefined) expect(typeof p.claims === 'object' && p.claims !== null, `${what}: claims`).toBe(true);
      if (p.models !== undefined)
        expect(Array.isArray(p.models) && p.models.every((m) => typeof m === 'string'), `${what}: models ${describeValue(p.models)}`).toBe(true);
      if (p.expiresAt !== undefined) {
        // Epoch milliseconds in the future (a token's `exp` is in seconds: a plugin that forgets to convert gives a date in 1970).
        const ok = typeof p.expiresAt === 'number' && p.expiresAt > Date.now() - 60_000 && p.expiresAt < Date.now() + 10 * 365 * 86_400_000;
        expect(ok, `${what}: expiresAt ${describeValue(p.expiresAt)} must be epoch ms, not seconds`).toBe(true);
      }
      return p;
    };

    it('setup gives a strategy with authenticate()', () => {
      expect(typeof strategy.authenticate).toBe('function');
      expect(fx.none.length, 'the fixture gives no `none` request').toBeGreaterThan(0);
      expect(fx.mine.length, 'the fixture gives no `mine` request').toBeGreaterThan(0);
      expect(fx.invalid.length, 'the fixture gives no `invalid` request').toBeGreaterThan(0);
    });

    it('none: a request without credentials it understands gives null ("not mine")', async () => {
      const requests = [...fx.none, ...ENTRIES.map((entry) => ({ headers: {}, entry }))];
      for (const [i, request] of requests.entries()) {
        const o = await authenticate(strategy, request);
        if (o.kind === 'error') expectSafeError(o.error, request, `none[${i}]`);
        expect(o.kind, `none[${i}] ${JSON.stringify(request.headers)}: expected null, got ${describeOutcome(o)}`).toBe('null');
      }
    });

    it('mine: valid credentials give a Principal with id, via = the configured name, and roles', async () => {
      for (const [i, { request, id, roles }] of fx.mine.entries()) {
        const o = await authenticate(strategy, request);
        if (o.kind === 'error') expectSafeError(o.error, request, `mine[${i}]`);
        const p = expectPrincipal(o, `mine[${i}]`);
        expect(p.id, `mine[${i}]: principal id`).toBe(id);
        if (roles) expect([...p.roles].sort(), `mine[${i}]: roles`).toEqual([...roles].sort());
        const again = expectPrincipal(await authenticate(strategy, request), `mine[${i}] again`);
        expect(again.id, `mine[${i}]: a second call gives another principal`).toBe(id);
      }
    });

    it('invalid: its own kind of credential, but wrong, throws McpError MCP_UNAUTHENTICATED (401) without repeating it', async () => {
      for (const [i, request] of fx.invalid.entries()) {
        const o = await authenticate(strategy, request);
        expect(o.kind, `invalid[${i}] ${JSON.stringify(request.headers)}: expected MCP_UNAUTHENTICATED, got ${describeOutcome(o)}`).toBe('error');
        const e = expectSafeError((o as { error: unknown }).error, request, `invalid[${i}]`);
        expect([e.code, e.status], `invalid[${i}]: ${e.message}`).toEqual(['MCP_UNAUTHENTICATED', 401]);
      }
    });

    it("foreign: another strategy's credential gives null, not a throw", async (t) => {
      if (!fx.foreign?.length) t.skip('the fixture gives no foreign credential');
      for (const [i, request] of fx.foreign!.entries()) {
        const o = await authenticate(strategy, request);
        if (o.kind === 'error') expectSafeError(o.error, request, `foreign[${i}]`);
        expect(o.kind, `foreign[${i}] ${JSON.stringify(request.headers)}: expected null, got ${describeOutcome(o)}`).toBe('null');
      }
    });

    it(
      'throws nothing but McpError on random requests, and never repeats what was presented',
      async () => {
        const token = fc.oneof(
          fc.string({ maxLength: 80 }),
          fc.string({ unit: 'grapheme', maxLength: 40 }),
          fc.base64String({ maxLength: 120 }),
          fc.constantFrom('', ' ', 'null', 'undefined', 'eyJhbGciOiJub25lIn0.e30.', 'mcp_sk_', `mcp_sk_${'A'.repeat(43)}_AAAAAA`),
        );
        const scheme = fc.constantFrom('Bearer', 'bearer', 'BEARER', 'Basic', 'Token', 'ApiKey', '');
        const authorization = fc.oneof(
          token,
          fc.tuple(scheme, token).map(([s, v]) => `${s} ${v}`),
        );
        const headers = fc
          .record(
            {
              authorization: fc.option(authorization, { nil: undefined }),
              'x-api-key': fc.option(token, { nil: undefined }),
              cookie: fc.option(token, { nil: undefined }),
            },
            { requiredKeys: [] },
          )
          .chain((known) =>
            fc
              .dictionary(
                fc.string({ minLength: 1, maxLength: 20 }).map((k) => k.toLowerCase()),
                token,
                { maxKeys: 3 },
              )
              .map((other) => ({ ...other, ...known })),
          );
        const request = fc
          .record({ headers, entry: fc.constantFrom(...ENTRIES), ip: fc.option(fc.ipV4(), { nil: undefined }) })
          .map((r): AuthRequest => (r.ip === undefined ? { headers: r.headers, entry: r.entry } : r));
        await fc.assert(
          fc.asyncProperty(request, async (req) => {
            const o = await authenticate(strategy, req);
            if (o.kind === 'error') expectSafeError(o.error, req, `authenticate(${JSON.stringify(req.headers).slice(0, 300)})`);
            if (o.kind === 'principal') expectPrincipal(o, `authenticate(${JSON.stringify(req.headers).slice(0, 300)})`);
          }),
          { numRuns },
        );
      },
      testTimeout,
    );

    it(
      'throws nothing but McpError when a valid or invalid credential is altered (a character changed, cut or added)',
      async () => {
        const seeds = [...fx.mine.map((m) => m.request), ...fx.invalid];
        const mutated = fc
          .record({
            seed: fc.constantFrom(...seeds),
            at: fc.nat(),
            op: fc.constantFrom('flip', 'cut', 'add', 'case', 'pad'),
            ch: fc.string({ minLength: 1, maxLength: 1 }),
          })
          .map(({ seed, at, op, ch }): AuthRequest => {
            const keys = Object.keys(seed.headers).filter((k) => typeof seed.headers[k] === 'string');
            if (keys.length === 0) return seed;
            const key = keys[at % keys.length]!;
            const v = seed.headers[key]!;
            const i = at % Math.max(1, v.length);
            const next =
              op === 'flip'
                ? `${v.slice(0, i)}${ch}${v.slice(i + 1)}`
                : op === 'cut'
                  ? v.slice(0, i)
                  : op === 'add'
                    ? `${v}${ch}`
                    : op === 'case'
                      ? at % 2
                        ? v.toUpperCase()
                        : v.toLowerCase()
                      : ` ${v} `;
            return { ...seed, headers: { ...seed.headers, [key]: next } };
          });
        await fc.assert(
          fc.asyncProperty(mutated, async (req) => {
            const o = await authenticate(strategy, req);
            if (o.kind === 'error') {
              const e = expectSafeError(o.error, req, `authenticate(${JSON.stringify(req.headers).slice(0, 300)})`);
              expect(e.status, `a refused credential: ${e.code} (${e.message})`).toBe(401);
            }
            if (o.kind === 'principal') expectPrincipal(o, `authenticate(${JSON.stringify(req.headers).slice(0, 300)})`);
          }),
          { numRuns },
        );
      },
      testTimeout,
    );

    it(
      `runs on every request: ${calls} calls complete (bound: ${callsBudgetMs} ms)`,
      async () => {
        const mix = [...fx.none, ...fx.mine.map((m) => m.request), ...fx.invalid, ...(fx.foreign ?? [])];
        const run = async () => {
          for (let i = 0; i < calls; i++) await authenticate(strategy, mix[i % mix.length]!);
        };
        await within(run(), callsBudgetMs, `${calls} authenticate() calls`);
      },
      testTimeout,
    );

    it(
      'concurrent calls agree with sequential ones',
      async () => {
        const mix = [...fx.none, ...fx.mine.map((m) => m.request), ...fx.invalid, ...(fx.foreign ?? [])];
        const key = (o: Outcome) =>
          o.kind === 'principal' ? `principal:${o.principal.id}` : o.kind === 'null' ? 'null' : `error:${(o.error as McpError).code}`;
        const sequential: string[] = [];
        for (const r of mix) sequential.push(key(await authenticate(strategy, r)));
        const requests = Array.from({ length: 20 }, () => mix).flat();
        const concurrent = await within(Promise.all(requests.map((r) => authenticate(strategy, r))), callsBudgetMs, 'concurrent authenticate() calls');
        expect(concurrent.map(key)).toEqual(Array.from({ length: 20 }, () => sequential).flat());
      },
      testTimeout,
    );
  });
}

// ───────────────────────────── a key server for JWT strategies ─────────────────────────────

/** A JSON Web Key Set served on loopback, standing in for an identity provider's JWKS endpoint. */
export interface JwksServer {
  /** URL of the key set (`<origin><path>`). */
  url: string;
  /** `http://127.0.0.1:<port>` (an Auth0 `baseUrl`). */
  origin: string;
  /** Requests for the key set so far. */
  readonly fetches: number;
  /** Requests for any other path (a strategy must never build a URL out of a token's `kid`). */
  readonly otherRequests: string[];
  /** Serves another key set from now on (key rotation). */
  setKeys(keys: ReadonlyArray<Record<string, unknown>>): void;
  /** Answers with this HTTP status and no key set (an outage) until set back to 200. */
  setStatus(status: number): void;
  close(): Promise<void>;
}

/** Starts a JWKS server on 127.0.0.1 serving `keys` (public JWKs) at `path` (default `/.well-known/jwks.json`). */
export async function startJwksServer(keys: ReadonlyArray<Record<string, unknown>>, path = '/.well-known/jwks.json'): Promise<JwksServer> {
  let current = JSON.stringify({ keys });
  let status = 200;
  let fetches = 0;
  const otherRequests: string[] = [];
  const server = await listenOnLoopback((req, res) => {
    if ((req.url ?? '/') !== path) {
      otherRequests.push(req.url ?? '/');
      res.writeHead(404).end();
      return;
    }
    fetches++;
    if (status !== 200) res.writeHead(status, { 'content-type': 'text/plain' }).end('unavailable');
    else res.writeHead(200, { 'content-type': 'application/json' }).end(current);
  });
  return {
    url: `${server.origin}${path}`,
    origin: server.origin,
    get fetches() {
      return fetches;
    },
    otherRequests,
    setKeys(next) {
      current = JSON.stringify({ keys: next });
    },
    setStatus(next) {
      status = next;
    },
    close: () => server.close(),
  };
}
