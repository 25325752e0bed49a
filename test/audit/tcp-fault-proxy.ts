import { createServer, connect, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy on 127.0.0.1 that can cut a database off like a crash of its server
 * (`pg_ctlcluster … stop -m immediate`): cut() resets every open connection, and until restore()
 * every new connection is reset as soon as it is accepted (the port stays bound: closing it would
 * let another process take it on a busy machine). The shared PostgreSQL behind it is never
 * touched. (src/testing/fault-proxy.ts speaks HTTP; this is below it.)
 */
export interface TcpFaultProxy {
  readonly port: number;
  /** Connections reset by cut() so far. */
  readonly resets: number;
  cut(): void;
  restore(): Promise<void>;
  close(): Promise<void>;
}

export async function startTcpFaultProxy(target: { host: string; port: number }): Promise<TcpFaultProxy> {
  const pairs = new Set<[Socket, Socket]>();
  let resets = 0;
  let down = false;
  const server: Server = createServer((client) => {
    if (down) {
      resets++;
      client.on('error', () => {});
      client.resetAndDestroy();
      return;
    }
    const upstream = connect(target.port, target.host);
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    get resets() {
      return resets;
    },
    cut() {
      down = true;
      for (const [client, upstream] of pairs) {
        resets++;
        client.resetAndDestroy();
        upstream.destroy();
      }
      pairs.clear();
    },
    async restore() {
      down = false;
    },
    async close() {
      for (const [client, upstream] of pairs) {
        client.destroy();
        upstream.destroy();
      }
      pairs.clear();
      await new Promise<void>((res) => server.close(() => res()));
    },
  };
}
