/**
 * An HTTP-level fault-injecting reverse proxy on 127.0.0.1 for tests: faults are switched at
 * run time with `set()`: added latency, an error rate (seeded, deterministic) answered with a
 * given status, black hole (accept, never answer), connection reset, or healthy passthrough.
 * Bodies stream through both ways (SSE works); a client going away aborts the upstream request.
 * close() destroys every socket, so tests leave no handles.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { pipeline } from 'node:stream';
import { Agent, request } from 'undici';
import { mulberry32 } from '../sdk/random.ts';
import { AnswerTimers, listenOnLoopback } from './loopback-server.ts';

export interface Fault {
  /** Delay before forwarding (or before answering with an injected error). */
  latencyMs?: number;
  /** Fraction of requests (0..1) answered by the proxy with `errorStatus`. */
  errorRate?: number;
  /** Status of injected errors; default 503. */
  errorStatus?: number;
  /** Body of injected errors; default an OpenAI-style error JSON. */
  errorBody?: string;
  /** Retry-After header on injected errors. */
  retryAfter?: string;
  /** Accept requests and never answer. */
  blackHole?: boolean;
  /** Reset the client connection on each request (RST when the platform allows it). */
  reset?: boolean;
}

export interface FaultProxy {
  /** Proxy base URL with the target's path (e.g. `http://127.0.0.1:p/v1` for target `…/v1`). */
  readonly url: string;
  /** Requests received. */
  readonly requests: number;
  /** Requests forwarded to the target. */
  readonly forwarded: number;
  /** Requests answered with an injected fault (error, reset, black hole). */
  readonly faulted: number;
  /** Client connections accepted. */
  readonly connections: number;
  /** Switches the fault for the next requests; `set({})` is healthy passthrough. Resets the RNG when `seed` is given. */
  set(fault: Fault, seed?: number): void;
  close(): Promise<void>;
}

/** Seeded PRNG in [0, 1) for reproducible fault patterns. */
export const seededRandom = mulberry32;

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-authorization', 'proxy-authenticate', 'host']);

function forwardHeaders(headers: IncomingMessage['headers']): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) out[k] = v;
  return out;
}

export async function startFaultProxy(opts: { target: string; seed?: number; fault?: Fault }): Promise<FaultProxy> {
  const target = new URL(opts.target);
  const agent = new Agent({ connections: 64, keepAliveTimeout: 2_000 });
  let fault: Fault = opts.fault ?? {};
  let rng = seededRandom(opts.seed ?? 1);
  let requests = 0;
  let forwarded = 0;
  let faulted = 0;
  const timers = new AnswerTimers();
  const inflight = new Set<AbortController>();

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const f = fault;
    if (f.blackHole) {
      faulted++;
      req.resume();
      return;
    }
    if (f.reset) {
      faulted++;
      const socket = req.socket as Socket & { resetAndDestroy?: () => void };
      if (typeof socket.resetAndDestroy === 'function') socket.resetAndDestroy();
      else socket.destroy();
      return;
    }
    const injectError = (f.errorRate ?? 0) > 0 && rng() < (f.errorRate ?? 0);
    if ((f.latencyMs ?? 0) > 0 && !(await timers.wait(f.latencyMs ?? 0, res))) return;
    if (injectError) {
      faulted++;
      req.resume();
      const status = f.errorStatus ?? 503;
      const body = Buffer.from(f.errorBody ?? JSON.stringify({ error: { message: `fault proxy injected ${status}`, type: 'fault_injected' } }));
      const headers: Record<string, string> = { 'content-type': 'application/json', 'content-length': String(body.length) };
      if (f.retryAfter !== undefined) headers['retry-after'] = f.retryAfter;
      res.writeHead(status, headers);
      res.end(body);
      return;
    }
    forwarded++;
    const ac = new AbortController();
    inflight.add(ac);
    res.once('close', () => {
      if (!res.writableFinished) ac.abort();
      inflight.delete(ac);
    });
    const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
    try {
      const up = await request(`${target.origin}${req.url ?? '/'}`, {
        method: (req.method ?? 'GET') as 'GET',
        headers: forwardHeaders(req.headers),
        body: hasBody ? req : undefined,
        signal: ac.signal,
        dispatcher: agent,
        headersTimeout: 0,
        bodyTimeout: 0,
      });
      const headers: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(up.headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) headers[k] = v;
      res.writeHead(up.statusCode, headers);
      res.flushHeaders();
      pipeline(up.body, res, () => {
        /* errors: one side went away; the other is destroyed by pipeline */
      });
    } catch {
      if (res.destroyed) return;
      if (!res.headersSent) {
        const body = Buffer.from(JSON.stringify({ error: { message: 'fault proxy: target unreachable' } }));
        res.writeHead(502, { 'content-type': 'application/json', 'content-length': String(body.length) });
        res.end(body);
      } else {
        res.destroy();
      }
    }
  }

  const lb = await listenOnLoopback((req, res) => {
    requests++;
    handle(req, res).catch(() => res.destroy());
  });
  const path = target.pathname.replace(/\/+$/, '');

  return {
    url: `${lb.origin}${path}`,
    get requests() {
      return requests;
    },
    get forwarded() {
      return forwarded;
    },
    get faulted() {
      return faulted;
    },
    get connections() {
      return lb.connections;
    },
    set(next, seed) {
      fault = { ...next };
      if (seed !== undefined) rng = seededRandom(seed);
    },
    async close() {
      timers.clear();
      for (const ac of inflight) ac.abort();
      await lb.close();
      await agent.destroy();
    },
  };
}
