/**
 * The backend conformance suite on every first-party backend and on the example third-party
 * plugin: remote backends against fake model servers on loopback, the worker backend against a
 * real worker HTTP server, tfjs on the demo model and on a small tensor model built here.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import pino from 'pino';
import { describeBackendConformance, freeLoopbackPort, startFakeKServe, startFakeOpenAI, testPluginContext } from 'capibara-mcp/testing';
import { createWorkerHttpServer, type InferenceInput, type InstanceSpec, type LoadedInstance } from 'capibara-mcp';
import openaiPlugin from '../../plugins/backend-openai/index.ts';
import kservePlugin from '../../plugins/backend-kserve-v2/index.ts';
import workerPlugin from '../../plugins/backend-worker/index.ts';
import tfjsPlugin, { fileSaveHandler, type CharLmInstance } from '../../plugins/backend-tfjs/index.ts';

const spec = (id: string, endpoint: string, options: Record<string, unknown> = {}, model = 'fake-model'): InstanceSpec => ({
  id,
  model,
  version: '1',
  endpoint,
  options,
});

const llmRequests = {
  generate: { task: 'generate', prompt: 'Say hello', parameters: { maxTokens: 8, seed: 1 } },
  chat: { task: 'chat', messages: [{ role: 'user', content: 'Say hello' }], parameters: { maxTokens: 8, seed: 1 } },
  embed: { task: 'embed', texts: ['capybara', 'a larger rodent'] },
} satisfies Record<string, InferenceInput>;

/** 100 tokens, 100 ms apart: ten seconds unabated, paced the same when not streamed. */
const SLOW_OPENAI = { tokens: Array.from({ length: 100 }, (_, i) => `t${i} `), tokenDelayMs: 100, paceAnswers: true };
const slowGenerate: InferenceInput = { task: 'generate', prompt: 'Tell a long story' };

const doubler = (rows: number): InferenceInput => ({
  task: 'tensor',
  tensors: [{ name: 'INPUT0', shape: [rows, 4], datatype: 'FP32', data: Array.from({ length: rows * 4 }, (_, i) => i / 2) }],
});

describeBackendConformance('openai', async () => {
  const fake = await startFakeOpenAI();
  const slow = await startFakeOpenAI(SLOW_OPENAI);
  const closed = await freeLoopbackPort();
  return {
    plugin: openaiPlugin,
    options: { timeouts: { connectMs: 2000 } },
    spec: spec('openai-1', fake.url),
    requests: llmRequests,
    unreachable: spec('openai-gone', `http://127.0.0.1:${closed}/v1`),
    slow: { spec: spec('openai-slow', slow.url), input: slowGenerate, inFlight: () => slow.open },
    close: async () => {
      await fake.close();
      await slow.close();
    },
  };
});

describeBackendConformance('kserve-v2', async () => {
  const fake = await startFakeKServe();
  const slow = await startFakeKServe({ inferDelayMs: 30_000 });
  const closed = await freeLoopbackPort();
  return {
    plugin: kservePlugin,
    spec: spec('doubler-1', fake.url, {}, 'doubler'),
    requests: { tensor: doubler(2) },
    invalid: [{ task: 'tensor', tensors: [{ name: 'INPUT0', shape: [1, 4], datatype: 'INT32', data: [1, 2, 3, 4] }] }],
    unreachable: spec('doubler-gone', `http://127.0.0.1:${closed}`, {}, 'doubler'),
    slow: { spec: spec('doubler-slow', slow.url, {}, 'doubler'), input: doubler(1), inFlight: () => slow.open },
    close: async () => {
      await fake.close();
      await slow.close();
    },
  };
});

/** The gateway's call token the worker below accepts (given to the worker backend as a header option). */
const CALL = { authorization: 'Bearer contract-test-worker-call-token' };

/** A worker process's HTTP side on loopback, serving instances loaded by real backend plugins. */
async function startWorker(instances: Map<string, LoadedInstance>): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createWorkerHttpServer({ instances, callToken: () => 'contract-test-worker-call-token', logger: pino({ level: 'silent' }) });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

describeBackendConformance('worker (an openai instance on the worker)', async () => {
  const fake = await startFakeOpenAI();
  const slow = await startFakeOpenAI(SLOW_OPENAI);
  const ctx = testPluginContext('openai');
  const openai = await openaiPlugin.setup(ctx, openaiPlugin.options.parse({}));
  const never = new AbortController().signal;
  const worker = await startWorker(
    new Map([
      ['llm', await openai.load(spec('llm', fake.url), never)],
      ['llm-slow', await openai.load(spec('llm-slow', slow.url), never)],
    ]),
  );
  const closed = await freeLoopbackPort();
  return {
    plugin: workerPlugin,
    spec: spec('gw-llm', worker.url, { remoteInstanceId: 'llm', headers: CALL }),
    requests: llmRequests,
    unreachable: spec('gw-gone', `http://127.0.0.1:${closed}`, { remoteInstanceId: 'llm', headers: CALL }),
    slow: { spec: spec('gw-llm-slow', worker.url, { remoteInstanceId: 'llm-slow', headers: CALL }), input: slowGenerate, inFlight: () => slow.open },
    close: async () => {
      await worker.close();
      await ctx.close();
      await fake.close();
      await slow.close();
    },
  };
});

describeBackendConformance('worker (a kserve-v2 instance on the worker)', async () => {
  const fake = await startFakeKServe();
  const slow = await startFakeKServe({ inferDelayMs: 30_000 });
  const ctx = testPluginContext('kserve-v2');
  const kserve = await kservePlugin.setup(ctx, kservePlugin.options.parse({}));
  const never = new AbortController().signal;
  const worker = await startWorker(
    new Map([
      ['doubler', await kserve.load(spec('doubler', fake.url, {}, 'doubler'), never)],
      ['doubler-slow', await kserve.load(spec('doubler-slow', slow.url, {}, 'doubler'), never)],
    ]),
  );
  return {
    plugin: workerPlugin,
    spec: spec('gw-doubler', worker.url, { remoteInstanceId: 'doubler', headers: CALL }, 'doubler'),
    requests: { tensor: doubler(3) },
    slow: {
      spec: spec('gw-doubler-slow', worker.url, { remoteInstanceId: 'doubler-slow', headers: CALL }, 'doubler'),
      input: doubler(1),
      inFlight: () => slow.open,
    },
    close: async () => {
      await worker.close();
      await ctx.close();
      await fake.close();
      await slow.close();
    },
  };
});

const DEMO_MODEL = fileURLToPath(new URL('../../models/capibara-mini/', import.meta.url));

describeBackendConformance('tfjs (capibara-mini, a char-lm)', {
  plugin: tfjsPlugin,
  spec: { id: 'capibara-mini-1', model: 'capibara-mini', version: '1', endpoint: DEMO_MODEL, options: { maxTokensLimit: 50_000 } },
  requests: {
    generate: { task: 'generate', prompt: 'The capybara', parameters: { maxTokens: 24, seed: 7 } },
    chat: { task: 'chat', messages: [{ role: 'user', content: 'What do capybaras eat?' }], parameters: { maxTokens: 24, seed: 7 } },
  },
  // 50,000 forward passes, seconds even on a fast machine; greedy decoding of this prompt never ends early
  slow: {
    input: { task: 'generate', prompt: 'The capybara', parameters: { maxTokens: 50_000, temperature: 0 } },
    inFlight: (instance) => (instance as CharLmInstance).activeGenerations,
  },
});

describeBackendConformance('tfjs (a dense tensor model)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'conformance-tfjs-'));
  const model = tf.sequential({
    layers: [
      tf.layers.dense({ units: 8, inputShape: [4], activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }) }),
      tf.layers.dense({ units: 3, activation: 'softmax', name: 'probs', kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }) }),
    ],
  });
  await model.save(fileSaveHandler(dir));
  const inputName = model.inputs[0]!.name;
  model.dispose();
  return {
    plugin: tfjsPlugin,
    spec: { id: 'dense-1', model: 'dense', version: '1', endpoint: dir, options: {} },
    requests: { tensor: { task: 'tensor', tensors: [{ name: inputName, shape: [2, 4], datatype: 'FP32', data: [0.1, -0.2, 0.3, 0.4, 1, 2, 3, 4] }] } },
    invalid: [{ task: 'tensor', tensors: [{ name: inputName, shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }], outputs: ['not-an-output'] }],
    close: () => rmSync(dir, { recursive: true, force: true }),
  };
});

const ECHO_PLUGIN = fileURLToPath(new URL('../../examples/capibara-plugin-echo', import.meta.url));

describeBackendConformance('echo (examples/capibara-plugin-echo, loaded by path)', {
  plugin: ECHO_PLUGIN,
  options: { prefix: 'echo: ', tokenDelayMs: 20 },
  spec: { id: 'echo-1', model: 'echo', version: 'v1', options: {} },
  requests: {
    generate: { task: 'generate', prompt: 'hello capybara' },
    chat: { task: 'chat', messages: [{ role: 'user', content: 'hello capybara' }] },
  },
  // 300 words, 20 ms apart when streamed; infer answers at once
  slow: { input: { task: 'generate', prompt: Array.from({ length: 300 }, (_, i) => `w${i}`).join(' ') }, streamOnly: true },
});
