import { existsSync, readdirSync, readFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { extname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { McpError } from '../errors.ts';
import { PACKAGE_ROOT } from '../package-root.ts';

/**
 * The monitoring dashboard at /dashboard: a static Vite bundle (dashboard/, built by scripts/build.mjs
 * into dist/dashboard) served from memory. The page is public (its login form); every piece of data
 * it shows comes from /graphql with the signed-in user's token, so the API's permissions apply.
 */
export const DASHBOARD_DIR = join(PACKAGE_ROOT, 'dist', 'dashboard');

/** Only the bundle's own scripts and styles; data from this origin only (fetch and the WebSocket). */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

interface Asset {
  type: string;
  body: Buffer;
  gzip: Buffer;
}

let assets: Map<string, Asset> | undefined;

/** index.html and assets/*, read once; undefined when the bundle was not built. */
function loadAssets(dir: string): Map<string, Asset> | undefined {
  if (!existsSync(join(dir, 'index.html'))) return undefined;
  const out = new Map<string, Asset>();
  const add = (rel: string) => {
    const body = readFileSync(join(dir, rel));
    out.set(rel, { type: TYPES[extname(rel)] ?? 'application/octet-stream', body, gzip: gzipSync(body) });
  };
  add('index.html');
  if (existsSync(join(dir, 'assets'))) for (const name of readdirSync(join(dir, 'assets'))) add(`assets/${name}`);
  return out;
}

/** Answers GET/HEAD /dashboard and /dashboard/*; false for any other path. */
export function serveDashboard(path: string, method: string | undefined, acceptEncoding: string | undefined, res: ServerResponse): boolean {
  if (path !== '/dashboard' && !path.startsWith('/dashboard/')) return false;
  if (method !== 'GET' && method !== 'HEAD') throw new McpError('MCP_NOT_FOUND', `no route ${method ?? ''} ${path}`);
  assets ??= loadAssets(DASHBOARD_DIR);
  if (!assets) throw new McpError('MCP_DASHBOARD_NOT_BUILT', 'the dashboard is not built: run `npm run build` (npm install does it)');
  const rel = path === '/dashboard' || path === '/dashboard/' ? 'index.html' : path.slice('/dashboard/'.length);
  const asset = assets.get(rel);
  if (!asset) throw new McpError('MCP_NOT_FOUND', `no route ${method} ${path}`);
  const gzip = /\bgzip\b/.test(acceptEncoding ?? '');
  const body = gzip ? asset.gzip : asset.body;
  res.writeHead(200, {
    'content-type': asset.type,
    'content-length': body.length,
    'content-security-policy': DASHBOARD_CSP,
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    // File names under assets/ carry a content hash; the page itself is revalidated.
    'cache-control': rel === 'index.html' ? 'no-cache' : 'public, max-age=31536000, immutable',
    vary: 'accept-encoding',
    ...(gzip ? { 'content-encoding': 'gzip' } : {}),
  });
  res.end(method === 'HEAD' ? undefined : body);
  return true;
}
