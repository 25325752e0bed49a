// Sign-in for the dashboard: the same password login as the API (POST /api/v1/auth/login).
// The access token lives only in this module's memory and goes in the Authorization header (never in
// a URL). The refresh token is kept in sessionStorage so a reload of the tab stays signed in; it is
// scoped to this tab and gone when the tab closes, never sent by the browser on its own (unlike a
// cookie), and the page runs under a CSP that allows only its own bundled scripts.

const REFRESH_KEY = 'capibara-mcp.refresh';

interface TokenAnswer {
  access_token: string;
  refresh_token: string;
  expires_in: number;
}

export class AuthError extends Error {}

let accessToken: string | undefined;
let refreshTimer: ReturnType<typeof setTimeout> | undefined;
const listeners = new Set<(signedIn: boolean) => void>();

export function token(): string | undefined {
  return accessToken;
}

export function onSessionChange(fn: (signedIn: boolean) => void): void {
  listeners.add(fn);
}

async function post(path: string, body: unknown): Promise<TokenAnswer> {
  const res = await fetch(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const json = (await res.json().catch(() => ({}))) as Partial<TokenAnswer> & { error?: { message?: string } };
  if (!res.ok || !json.access_token || !json.refresh_token) throw new AuthError(json.error?.message ?? `sign-in failed (${res.status})`);
  return json as TokenAnswer;
}

function accept(t: TokenAnswer): void {
  const signedIn = accessToken !== undefined;
  accessToken = t.access_token;
  sessionStorage.setItem(REFRESH_KEY, t.refresh_token);
  clearTimeout(refreshTimer);
  // Refresh at 80% of the lifetime (at least 5 s from now), before the access token expires.
  refreshTimer = setTimeout(() => void refresh().catch(() => end()), Math.max(5, t.expires_in * 0.8) * 1000);
  if (!signedIn) for (const fn of listeners) fn(true);
}

function end(): void {
  clearTimeout(refreshTimer);
  sessionStorage.removeItem(REFRESH_KEY);
  const was = accessToken !== undefined;
  accessToken = undefined;
  if (was) for (const fn of listeners) fn(false);
}

export async function login(username: string, password: string): Promise<void> {
  accept(await post('/api/v1/auth/login', { username, password }));
}

/** A new token pair from the stored refresh token (rotated: the old one is spent). */
export async function refresh(): Promise<void> {
  const rt = sessionStorage.getItem(REFRESH_KEY);
  if (!rt) throw new AuthError('not signed in');
  accept(await post('/api/v1/auth/refresh', { refresh_token: rt }));
}

/** Signs in again from the tab's refresh token, if there is one. */
export async function resume(): Promise<boolean> {
  if (!sessionStorage.getItem(REFRESH_KEY)) return false;
  try {
    await refresh();
    return true;
  } catch {
    end();
    return false;
  }
}

export async function logout(): Promise<void> {
  const rt = sessionStorage.getItem(REFRESH_KEY);
  end();
  if (rt)
    await fetch('/api/v1/auth/logout', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ refresh_token: rt }) }).catch(
      () => undefined,
    );
}

/** Called when the API answers 401: the session ended elsewhere (revoked, expired). */
export function expired(): void {
  end();
}
