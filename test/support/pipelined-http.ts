/**
 * Many small HTTP/1.1 requests at little client cost: a few keep-alive sockets, each with a bounded
 * number of pipelined requests in flight, answers read with a minimal parser (status line,
 * content-length or chunked body). For floods whose subject is the server (fetch spends as much CPU
 * per request as the gateway does, which a flood of 10,000 pays twice).
 */
import net from 'node:net';

export interface PipelinedRequest {
  method: string;
  path: string;
  body?: string;
  headers?: Record<string, string>;
}

export interface PipelinedOptions {
  /** Sockets used side by side (default 16). */
  connections?: number;
  /** Requests written ahead of their answers on one socket (default 16). */
  window?: number;
  /** Whole flood bounded by this (default 120 s): the sockets are destroyed and the promise rejects. */
  timeoutMs?: number;
}

/** Sends `count` requests made by `make(i)` to `baseUrl` and resolves with the number of answers per status code. */
export async function pipelinedRequests(
  baseUrl: string,
  count: number,
  make: (i: number) => PipelinedRequest,
  opts: PipelinedOptions = {},
): Promise<Map<number, number>> {
  const url = new URL(baseUrl);
  const statuses = new Map<number, number>();
  const sockets = new Set<net.Socket>();
  let next = 0;
  const encode = (r: PipelinedRequest): string => {
    const body = r.body ?? '';
    const headers = { host: url.host, 'content-length': String(Buffer.byteLength(body)), ...r.headers };
    return `${r.method} ${r.path} HTTP/1.1\r\n${Object.entries(headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('')}\r\n${body}`;
  };
  const lane = () =>
    new Promise<void>((resolve, reject) => {
      const socket = net.connect(Number(url.port), url.hostname);
      sockets.add(socket);
      let inFlight = 0;
      let buf: Buffer = Buffer.alloc(0);
      const fill = () => {
        let out = '';
        while (inFlight < (opts.window ?? 16) && next < count) {
          out += encode(make(next++));
          inFlight++;
        }
        if (out) socket.write(out);
        if (inFlight === 0) {
          socket.end();
          resolve();
        }
      };
      /** One complete answer at the start of buf: its length, or 0 when more bytes are needed. */
      const answerLength = (): number => {
        const head = buf.indexOf('\r\n\r\n');
        if (head < 0) return 0;
        const lines = buf.subarray(0, head).toString('latin1').split('\r\n');
        const status = Number(lines[0]!.split(' ')[1]);
        const header = (name: string) =>
          lines
            .find((l) => l.toLowerCase().startsWith(`${name}:`))
            ?.slice(name.length + 1)
            .trim();
        let end = head + 4;
        if (header('transfer-encoding')?.toLowerCase() === 'chunked') {
          for (;;) {
            const lineEnd = buf.indexOf('\r\n', end);
            if (lineEnd < 0) return 0;
            const size = parseInt(buf.subarray(end, lineEnd).toString('latin1'), 16);
            end = lineEnd + 2 + size + 2;
            if (end > buf.length) return 0;
            if (size === 0) break;
          }
        } else {
          end += Number(header('content-length') ?? 0);
          if (end > buf.length) return 0;
        }
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        return end;
      };
      socket.on('data', (d: Buffer) => {
        buf = buf.length ? Buffer.concat([buf, d]) : d;
        for (let n = answerLength(); n > 0; n = answerLength()) {
          buf = buf.subarray(n);
          inFlight--;
        }
        fill();
      });
      socket.once('error', reject);
      socket.once('close', () => (inFlight > 0 ? reject(new Error(`connection closed with ${inFlight} requests unanswered`)) : resolve()));
      socket.once('connect', fill);
    });
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      Promise.all(Array.from({ length: opts.connections ?? 16 }, lane)),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${count} pipelined requests not answered within ${opts.timeoutMs ?? 120_000} ms`)),
          opts.timeoutMs ?? 120_000,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
    for (const s of sockets) s.destroy();
  }
  return statuses;
}
