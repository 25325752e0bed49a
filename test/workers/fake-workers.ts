/**
 * In-process workers for the identity tests: a real worker HTTP server (createWorkerHttpServer)
 * that speaks the worker protocol to the gateway by hand with a given credential, and an
 * attacker's server that serves anyone and records every request it gets.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { createWorkerHttpServer } from '../../src/workers/http-server.ts';
import { newWorkerSession } from '../../src/workers/call-auth.ts';
import type { InferenceInput } from '../../src/inference/types.ts';
import type { LoadedInstance } from '../../src/plugin/contract.ts';
import type { GqlClient } from './support.ts';

export interface ReportedInstance {
  model: string;
  remoteInstanceId: string;
  version?: string;
}

export interface InstanceOutcome {
  remoteInstanceId: string;
  model: string;
  accepted: boolean;
  instanceId: string | null;
  code: string | null;
  message: string | null;
}

type GqlAnswer<T> = Awaited<ReturnType<GqlClient['gql']>> & { data?: T };

const CALL_TOKEN = `mutation($i: WorkerCallTokenInput!) { workerCallToken(input: $i) }`;
const REGISTER = `mutation($i: RegisterWorkerInput!) {
  registerWorker(input: $i) { worker { id endpoint status } instances { remoteInstanceId model accepted instanceId code message } }
}`;

const listen = async (server: Server): Promise<string> => {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
};

const stop = async (server: Server): Promise<void> => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
};

/** Registers as `name` with `headers` (a worker credential): call token first, then registerWorker. */
export async function registerAs(
  gw: GqlClient,
  headers: Record<string, string>,
  input: { name: string; endpoint: string; session: string; instances: ReportedInstance[] },
  /** Called with the call token before registering (a worker must know it before the gateway's first call). */
  onToken: (token: string) => void = () => {},
): Promise<{ token?: string; answer: GqlAnswer<{ registerWorker: { worker: { id: string }; instances: InstanceOutcome[] } }> }> {
  const t = await gw.gql<{ workerCallToken: string }>(CALL_TOKEN, { i: { name: input.name, endpoint: input.endpoint, session: input.session } }, headers);
  if (t.data) onToken(t.data.workerCallToken);
  const answer = await gw.gql<{ registerWorker: { worker: { id: string }; instances: InstanceOutcome[] } }>(
    REGISTER,
    {
      i: {
        name: input.name,
        endpoint: input.endpoint,
        session: input.session,
        heartbeatIntervalMs: 60_000,
        instances: input.instances.map((i) => ({ model: i.model, version: i.version ?? 'v1', remoteInstanceId: i.remoteInstanceId, task: 'GENERATE' })),
      },
    },
    headers,
  );
  return { ...(t.data ? { token: t.data.workerCallToken } : {}), answer };
}

/** A well-behaved worker: answers `<label>:<prompt>` and records the prompts each instance got. */
export interface FakeWorker {
  url: string;
  session: string;
  /** The call token it accepts (learned from the gateway). */
  token(): string | undefined;
  prompts: Array<{ instance: string; prompt: string }>;
  register(name: string, instances: ReportedInstance[]): ReturnType<typeof registerAs>;
  close(): Promise<void>;
}

export async function startFakeWorker(gw: GqlClient, headers: Record<string, string>, label: string, remoteIds: string[]): Promise<FakeWorker> {
  const prompts: FakeWorker['prompts'] = [];
  const session = newWorkerSession();
  let token: string | undefined;
  const instance = (id: string): LoadedInstance => ({
    runtime: 'fake',
    device: 'cpu',
    tasks: ['generate'],
    async infer(input: InferenceInput) {
      const prompt = input.task === 'generate' ? input.prompt : '';
      prompts.push({ instance: id, prompt });
      return { text: `${label}:${prompt}`, finishReason: 'stop' };
    },
    async health() {
      return { ok: true };
    },
    async unload() {},
  });
  const server = createWorkerHttpServer({
    instances: new Map(remoteIds.map((id) => [id, instance(id)])),
    callToken: () => token,
    logger: pino({ level: 'silent' }),
  });
  const url = await listen(server);
  return {
    url,
    session,
    token: () => token,
    prompts,
    async register(name, instances) {
      return registerAs(gw, headers, { name, endpoint: url, session, instances }, (t) => {
        token = t;
      });
    },
    close: () => stop(server),
  };
}

/** An attacker's server: answers every route like a worker would, records everything it is sent. */
export async function startAttackerServer(): Promise<{ url: string; seen: Array<{ method: string; path: string; body: string }>; close(): Promise<void> }> {
  const seen: Array<{ method: string; path: string; body: string }> = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => {
      if (body.length < 10_000) body += c.toString();
    });
    req.on('end', () => {
      seen.push({ method: req.method ?? '', path: req.url ?? '', body });
      const health = (req.url ?? '').endsWith('/health');
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(health ? { ok: true, runtime: 'evil', device: 'cpu', tasks: ['generate'] } : { text: 'attacker answer', finishReason: 'stop' }));
    });
  });
  const url = await listen(server);
  return { url, seen, close: () => stop(server) };
}
