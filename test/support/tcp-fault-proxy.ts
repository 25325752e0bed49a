/**
 * A TCP proxy on 127.0.0.1 for faults below HTTP (Redis, PostgreSQL): `pass` forwards both ways; `stall`
 * holds every byte both ways (a network partition: nothing is lost, it arrives once healed);
 * `reset` resets every connection and every new one, like a crashed server (`pg_ctlcluster … stop -m
 * immediate`); the port stays bound, so no other process takes it meanwhile. The service behind it is
 * never touched. close() leaves no handles. (src/testing/fault-proxy.ts speaks HTTP; this is below it.)
 */
import { createServer, connect, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

export type TcpFault = 'pass' | 'stall' | 'reset';

export interface TcpFaultProxy {
  readonly port: number;
  /** Connections accepted so far. */
  readonly connections: number;
  set(fault: TcpFault): void;
  close(): Promise<void>;
}

interface Pair {
  client: Socket;
  upstream: Socket;
  held: Array<{ to: Socket; data: Buffer }>;
}

export async function startTcpFaultProxy(target: { host: string; port: number }): Promise<TcpFaultProxy> {
  let fault: TcpFault = 'pass';
  let connections = 0;
  const pairs = new Set<Pair>();
  const forward = (pair: Pair, to: Socket, data: Buffer) => {
    if (fault === 'stall') pair.held.push({ to, data });
    else if (!to.destroyed) to.write(data);
  };
  const drop = (pair: Pair, reset = false) => {
    if (reset) pair.client.resetAndDestroy();
    else pair.client.destroy();
    pair.upstream.destroy();
    pairs.delete(pair);
  };
  const server = createServer((client) => {
    connections++;
    if (fault === 'reset') {
      client.on('error', () => {});
      client.resetAndDestroy();
      return;
    }
    const upstream = connect(target.port, target.host);
    const pair: Pair = { client, upstream, held: [] };
    pairs.add(pair);
    client.on('data', (d: Buffer) => forward(pair, upstream, d));
    upstream.on('data', (d: Buffer) => forward(pair, client, d));
    for (const s of [client, upstream]) {
      s.on('error', () => drop(pair));
      s.on('close', () => drop(pair));
    }
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  return {
    port: (server.address() as AddressInfo).port,
    get connections() {
      return connections;
    },
    set(next) {
      fault = next;
      if (next === 'reset') for (const p of [...pairs]) drop(p, true);
      if (next === 'pass') {
        for (const p of pairs) {
          for (const { to, data } of p.held) if (!to.destroyed) to.write(data);
          p.held.length = 0;
        }
      }
    },
    async close() {
      for (const p of [...pairs]) drop(p);
      await new Promise<void>((res) => server.close(() => res()));
    },
  };
}
