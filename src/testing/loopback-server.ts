import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';

/** An HTTP server on 127.0.0.1 (port 0) that counts its connections and closes every socket on close(). */
export interface LoopbackServer {
  server: Server;
  port: number;
  /** http://127.0.0.1:port */
  origin: string;
  /** TCP connections accepted (keep-alive reuse keeps it low). */
  readonly connections: number;
  /** Stops listening and destroys every open socket, so tests leave no handles. */
  close(): Promise<void>;
}

export async function listenOnLoopback(handler: RequestListener): Promise<LoopbackServer> {
  const server = createServer({ keepAlive: true, noDelay: true }, handler);
  const sockets = new Set<Socket>();
  let connections = 0;
  server.on('connection', (s: Socket) => {
    connections++;
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    server,
    port,
    origin: `http://127.0.0.1:${port}`,
    get connections() {
      return connections;
    },
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      server.closeAllConnections();
      await closed;
    },
  };
}

/** What a fake model server saw: requests, per-path counts, answers cut short by the client, and requests still open. */
export interface RequestTally {
  requests: number;
  aborted: number;
  /** Requests whose answer is neither complete nor abandoned by the client yet. */
  open: number;
  counts: Record<string, number>;
}

/**
 * A request listener for fake model servers: counts the request (per path, and whether the client
 * went away before the answer finished), reads the whole body, then calls `handle` with it as text.
 */
export function tallyingListener(
  tally: RequestTally,
  handle: (req: IncomingMessage, res: ServerResponse, body: string, path: string) => void,
): RequestListener {
  return (req, res) => {
    tally.requests++;
    tally.open++;
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    tally.counts[path] = (tally.counts[path] ?? 0) + 1;
    res.once('close', () => {
      tally.open--;
      if (!res.writableFinished) tally.aborted++;
    });
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => handle(req, res, parts.length === 0 ? '' : Buffer.concat(parts).toString('utf8'), path));
  };
}

/** A TCP port free on 127.0.0.1 right now (for servers started in another process). */
export async function freeLoopbackPort(): Promise<number> {
  const s = createNetServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as AddressInfo;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

/** What a fake model server tells about the traffic it saw (live figures). */
export interface ServerCounters {
  /** Requests received. */
  readonly requests: number;
  /** TCP connections accepted (keep-alive reuse keeps it low). */
  readonly connections: number;
  /** Requests whose client went away before the answer was complete. */
  readonly aborted: number;
  /** Requests being answered now (not complete, client still there). */
  readonly open: number;
  /** Requests per path. */
  readonly counts: Readonly<Record<string, number>>;
}

/** Adds the live counters of `tally` and `lb` to `target` (as getters) and returns it. */
export function withCounters<T extends object>(target: T, tally: RequestTally, lb: LoopbackServer): T & ServerCounters {
  const live = (get: () => number) => ({ get, enumerable: true });
  return Object.defineProperties(target, {
    requests: live(() => tally.requests),
    connections: live(() => lb.connections),
    aborted: live(() => tally.aborted),
    open: live(() => tally.open),
    counts: { value: tally.counts, enumerable: true },
  }) as T & ServerCounters;
}

/** The timers a fake server holds answers back with; clear() cancels them all (at close). */
export class AnswerTimers {
  private readonly timers = new Set<ReturnType<typeof setTimeout>>();

  /** Resolves after `ms` with whether the client still waits; with false at once when it goes away. */
  wait(ms: number, res: ServerResponse): Promise<boolean> {
    if (ms <= 0) return Promise.resolve(!res.destroyed);
    return new Promise<boolean>((resolve) => {
      const t = this.after(ms, () => resolve(!res.destroyed));
      res.once('close', () => {
        if (this.timers.delete(t)) {
          clearTimeout(t);
          resolve(false);
        }
      });
    });
  }

  /** Runs `fn` after `ms` unless clear() comes first. */
  after(ms: number, fn: () => void): ReturnType<typeof setTimeout> {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
    return t;
  }

  clear(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }
}
