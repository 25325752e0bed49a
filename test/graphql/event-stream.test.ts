/**
 * The SSE writer of shared subscriptions (src/graphql/event-stream.ts) against a real HTTP server
 * and a real client socket on loopback: one frame's bytes shared by every response, and a client
 * that stops reading skips frames (counted) instead of growing the server's buffer, then gets
 * frames again once it reads.
 */
import { createServer, type Server, type ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import { Counter, Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import type { SharedPayload } from '../../src/graphql/context.ts';
import { EventStreams, nextFrame } from '../../src/graphql/event-stream.ts';

const waitFor = async (cond: () => boolean, ms = 20_000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe('EventStreams (SSE writes of shared payloads)', () => {
  let server: Server | undefined;
  const sockets: Socket[] = [];
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    server?.closeAllConnections();
    await new Promise((r) => (server ? server.close(r) : r(null)));
    server = undefined;
  });

  /** A server whose responses are event streams handed to the test, and `n` clients that connect to it. */
  async function open(n: number): Promise<{ responses: ServerResponse[]; clients: Socket[]; received: number[] }> {
    const responses: ServerResponse[] = [];
    server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(':\n\n');
      responses.push(res);
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const received = Array.from({ length: n }, () => 0);
    const clients = Array.from({ length: n }, (_, i) => {
      const s = connect(port, '127.0.0.1', () => s.write('GET / HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n'));
      s.on('data', (b: Buffer) => (received[i]! += b.length));
      sockets.push(s);
      return s;
    });
    await waitFor(() => responses.length === n);
    return { responses, clients, received };
  }

  it('encodes a payload once and writes the same bytes to every response', async () => {
    const registry = new Registry();
    const skipped = new Counter({ name: 'skipped', help: 'h', registers: [registry] });
    const streams = new EventStreams(skipped);
    const { responses, received } = await open(3);
    const payload: SharedPayload = { json: '{"data":{"x":1}}' };
    const frame = nextFrame(payload);
    expect(nextFrame(payload)).toBe(frame);
    expect(frame.toString()).toBe('event: next\ndata: {"data":{"x":1}}\n\n');
    const before = [...received];
    for (const res of responses) streams.writer(res)(payload);
    // Each client got the frame in a chunk of its own (chunked encoding adds the size line around it).
    await waitFor(() => received.every((n, i) => n > before[i]! + frame.length));
    expect((await registry.getSingleMetricAsString('skipped')).trim().endsWith('skipped 0')).toBe(true);
  });

  it('a client that stops reading skips frames (counted); the server holds at most its buffer and one frame; reading again resumes', async () => {
    const registry = new Registry();
    const skipped = new Counter({ name: 'skipped', help: 'h', registers: [registry] });
    const streams = new EventStreams(skipped);
    const { responses, clients, received } = await open(2);
    const [slow, fast] = responses as [ServerResponse, ServerResponse];
    clients[0]!.pause();
    const write = [streams.writer(slow), streams.writer(fast)];
    // 64 KiB frames, offered until the slow client's kernel buffers are full and its response skips (bounded loop).
    const json = JSON.stringify({ data: { pad: 'x'.repeat(64 * 1024) } });
    let maxBuffered = 0;
    let offered = 0;
    const skips = async () => (await skipped.get()).values[0]?.value ?? 0;
    while ((await skips()) < 20 && offered < 4000) {
      const p: SharedPayload = { json };
      for (const w of write) w(p);
      offered++;
      maxBuffered = Math.max(maxBuffered, slow.writableLength);
      // Paced by the client that reads: the next frame once its response drained.
      if (fast.writableNeedDrain) await new Promise((r) => fast.once('drain', r));
    }
    expect(await skips()).toBeGreaterThanOrEqual(20);
    // What Node holds for the slow response: under its high-water mark plus one frame (and the chunk framing).
    expect(maxBuffered).toBeLessThanOrEqual(slow.writableHighWaterMark + json.length + 64);
    // The fast client was never skipped: it received every frame offered.
    await waitFor(() => received[1]! >= offered * json.length);
    // Reading again: the slow response drains and frames are written to it again.
    clients[0]!.resume();
    await waitFor(() => !slow.writableNeedDrain);
    const skippedBefore = await skips();
    const at = received[0]!;
    for (const w of write) w({ json: '{"data":{"again":true}}' });
    await waitFor(() => received[0]! > at);
    expect(await skips()).toBe(skippedBefore);
  }, 60_000);
});
