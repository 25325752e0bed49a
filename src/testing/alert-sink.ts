/**
 * Alert-sink conformance suite. An alert-sink plugin's tests run it (vitest) against a real peer:
 *
 *   import { describeAlertSinkConformance } from 'capibara-mcp/testing';
 *   import plugin, { optionsSchema } from '../index.js';
 *
 *   describeAlertSinkConformance('my-sink', {
 *     create: async (ctx) => {
 *       const peer = await startMyPeer();
 *       return {
 *         sink: await plugin.setup(ctx, optionsSchema.parse({ url: peer.url, secret: 'env:MY_SECRET' })),
 *         failingSink: await plugin.setup(ctx, optionsSchema.parse({ url: peer.url + '/fail' })),
 *         stalledSink: await plugin.setup(ctx, optionsSchema.parse({ url: silent.url })),
 *         received: () => peer.alerts, // [{ id, state }] as the peer recorded them
 *         secrets: [process.env.MY_SECRET!],
 *         close: () => peer.close(),
 *       };
 *     },
 *   });
 *
 * `create` gets a plugin context whose logger records every line (level trace). Checked: a firing
 * alert and then its resolution reach the peer; a failing peer makes `send` reject (so the gateway
 * retries); an aborted signal rejects without delivering; aborting a delivery the peer never
 * answers rejects at once, not at the sink's own timeout; and no secret (an HMAC key, a password, a
 * token in a URL) appears in an error (message, stack, details, causes) or in any log line.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Alert, AlertSink, PluginContext } from '../plugin/contract.ts';
import { testPluginContext } from './plugin-context.ts';

export interface AlertSinkConformanceFixture {
  /** A sink delivering to a working peer. */
  sink: AlertSink;
  /** A sink whose peer refuses or fails every delivery (an error answer, a rejected login, an unwritable file). */
  failingSink: AlertSink;
  /** A sink whose peer accepts the connection and never answers (its own timeout well above 30 s); omit when there is no peer to stall. */
  stalledSink?: AlertSink;
  /** What the peer has received so far: one entry per delivery. */
  received(): Promise<ReadonlyArray<{ id: string; state: Alert['state'] }>> | ReadonlyArray<{ id: string; state: Alert['state'] }>;
  /** Secret values the sinks were given (resolved, not the references); none may appear in errors or logs. */
  secrets: string[];
  /** How long the peer may take to show a delivery, ms (default 10 s; Alertmanager batches notifications). */
  receiveTimeoutMs?: number;
  close?(): unknown;
}

export interface AlertSinkConformanceOptions {
  /** Sets the sinks up with `ctx` (its logger records every line) and starts their peers. Called once. */
  create(ctx: PluginContext): Promise<AlertSinkConformanceFixture> | AlertSinkConformanceFixture;
  /** Per-test timeout, ms (default 30 s). */
  timeoutMs?: number;
}

/** A TCP server on 127.0.0.1 that accepts connections and never sends a byte (a stalled HTTP or SMTP peer). */
export async function startSilentServer(): Promise<{ port: number; url: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A test alert with a fresh id. */
export function sampleAlert(state: Alert['state'] = 'firing', id = `conf-${randomBytes(6).toString('hex')}`): Alert {
  const startsAt = new Date(Date.now() - 60_000);
  return {
    id,
    rule: 'HighLatency',
    severity: 'critical',
    state,
    summary: 'p99 latency of capibara-mini above 500 ms for 5 minutes',
    labels: { model: 'capibara-mini', version: 'v1' },
    value: 812.5,
    startsAt,
    ...(state === 'resolved' ? { endsAt: new Date() } : {}),
  };
}

/** Everything an error carries that could reach a log or a client: message, stack, details, causes. */
function errorText(err: unknown, depth = 0): string {
  if (depth > 5 || err === undefined || err === null) return '';
  if (!(err instanceof Error)) return String(err);
  let details = '';
  try {
    details = JSON.stringify(
      err,
      Object.getOwnPropertyNames(err).filter((k) => k !== 'stack' && k !== 'cause'),
    );
  } catch {
    /* circular: message and stack suffice */
  }
  return [String(err), err.stack ?? '', details, errorText((err as { cause?: unknown }).cause, depth + 1)].join('\n');
}

export function describeAlertSinkConformance(name: string, opts: AlertSinkConformanceOptions): void {
  describe(`alert-sink conformance: ${name}`, { timeout: opts.timeoutMs ?? 30_000 }, () => {
    const lines: string[] = [];
    const errors: unknown[] = [];
    const base = testPluginContext(name);
    const ctx: PluginContext = {
      ...base,
      logger: pino(
        { level: 'trace' },
        new Writable({
          write(chunk: Buffer, _enc, cb) {
            lines.push(chunk.toString('utf8'));
            cb();
          },
        }),
      ),
    };
    let fx: AlertSinkConformanceFixture;
    const waitFor = async (id: string, state: Alert['state']): Promise<void> => {
      const until = Date.now() + (fx.receiveTimeoutMs ?? 10_000);
      for (;;) {
        const got = await fx.received();
        if (got.some((r) => r.id === id && r.state === state)) return;
        if (Date.now() > until) throw new Error(`the peer did not receive ${state} alert ${id} (received: ${JSON.stringify(got.slice(-10))})`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    const rejection = async (p: Promise<void>): Promise<unknown> => {
      const err = await p.then(
        () => undefined,
        (e: unknown) => e ?? new Error('rejected with nothing'),
      );
      expect(err, 'send() must reject').toBeDefined();
      errors.push(err);
      return err;
    };

    beforeAll(async () => {
      fx = await opts.create(ctx);
    }, 60_000);
    afterAll(async () => {
      await fx?.close?.();
      await base.close();
    });

    it('delivers a firing alert, then its resolution', async () => {
      const firing = sampleAlert('firing');
      await fx.sink.send(firing, new AbortController().signal);
      await waitFor(firing.id, 'firing');
      const resolved: Alert = { ...firing, state: 'resolved', endsAt: new Date() };
      await fx.sink.send(resolved, new AbortController().signal);
      await waitFor(firing.id, 'resolved');
    });

    it('rejects when the peer fails, so the gateway retries; each failure rejects again', async () => {
      for (let i = 0; i < 2; i++) {
        const err = await rejection(fx.failingSink.send(sampleAlert(), new AbortController().signal));
        expect(err).toBeInstanceOf(Error);
      }
    });

    it('an aborted signal rejects and delivers nothing', async () => {
      const alert = sampleAlert();
      const abort = new AbortController();
      abort.abort(new Error('shutting down'));
      await rejection(fx.sink.send(alert, abort.signal));
      // A later delivery does arrive, the aborted one never did.
      const next = sampleAlert();
      await fx.sink.send(next, new AbortController().signal);
      await waitFor(next.id, 'firing');
      expect((await fx.received()).some((r) => r.id === alert.id)).toBe(false);
    });

    it('aborting a delivery the peer never answers rejects it at once', async (t) => {
      if (!fx.stalledSink) return t.skip('no peer to stall for this sink');
      const abort = new AbortController();
      const started = Date.now();
      const pending = fx.stalledSink.send(sampleAlert(), abort.signal);
      setTimeout(() => abort.abort(new Error('deadline')), 200);
      await rejection(pending);
      // The stalled sink's own timeout is above 30 s: only the abort can have ended it this early.
      expect(Date.now() - started).toBeLessThan(25_000);
    });

    it('no secret appears in an error or a log line', () => {
      expect(errors.length, 'the tests above collected the errors').toBeGreaterThan(0);
      const texts = [...errors.map((e) => errorText(e)), ...lines];
      for (const secret of fx.secrets.filter((s) => s.length >= 4)) {
        for (const text of texts) expect(text.includes(secret), `a secret leaked into: ${text.slice(0, 300)}`).toBe(false);
      }
    });
  });
}
