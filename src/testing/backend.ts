/**
 * Backend conformance suite. Third-party backend authors run it from their own tests (vitest):
 *
 *   import { describeBackendConformance } from 'capibara-mcp/testing';
 *   import plugin from '../index.js';
 *
 *   describeBackendConformance('my-backend', async () => {
 *     const server = await startMyModelServer();            // or point at a real one
 *     return {
 *       plugin,                                              // or a path / package name, loaded as the gateway does
 *       options: { apiKey: 'test' },                         // plugin options as written in the config
 *       spec: { id: 'm-1', model: 'm', version: '1', endpoint: server.url, options: {} },
 *       requests: { chat: { task: 'chat', messages: [{ role: 'user', content: 'Hi' }], parameters: { seed: 1 } } },
 *       unreachable: { id: 'gone', model: 'm', version: '1', endpoint: 'http://127.0.0.1:9', options: {} },
 *       slow: { input: { task: 'generate', prompt: 'Tell a long story', parameters: { maxTokens: 4000 } } },
 *       close: () => server.close(),
 *     };
 *   });
 *
 * The fixture gives what the suite cannot know: how to set the plugin up, a spec that serves,
 * one valid, deterministic request per task the instance serves, and (optionally) a spec whose
 * server cannot be reached, a slow request, and inputs the model must refuse. The suite sets the
 * plugin up as the host does (options validated by its schema, a real PluginContext, close hooks)
 * and checks: load (runtime, device, tasks, signature), infer (the output shape of every task),
 * stream (chunks concatenate to the answer; only the last has finishReason, with usage when
 * reported), cancel mid-stream (abort, and the iterator's return()), deadlines (never hangs),
 * unload (retryable, mayHaveExecuted false; twice is safe), health (a report, never a throw),
 * error codes and retry safety (McpError from ERROR_CODES; unreachable ⇒ retryable and not
 * executed; unsupported task and bad input ⇒ 4xx, not retryable), concurrent requests, and random
 * inputs (fast-check). A check the fixture gives nothing for is skipped with the reason.
 */
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import fc from 'fast-check';
import { ERROR_CODES, McpError } from '../errors.ts';
import type { Backend, BackendCall, InstanceSpec, LoadedInstance, ModelSignature, TensorSignature } from '../plugin/contract.ts';
import type { FinishReason, InferenceChunk, InferenceInput, InferenceOutput, InferenceTask, Tensor, TensorDatatype, Usage } from '../inference/types.ts';
import { TASKS, TENSOR_DATATYPES as DATATYPES } from '../inference/schema.ts';
import { describeValue, settle, setUpPlugin, until, within, type PluginHarness, type PluginUnderTest } from './plugin-harness.ts';

/** A request that runs for seconds when left alone. */
export interface SlowRequest {
  /** The instance to send it to (e.g. one on a deliberately slow server); default: the fixture's `spec`. */
  spec?: InstanceSpec;
  /**
   * Left alone, it runs for at least a few seconds (a long generation, a server that answers
   * slowly); streamed, its first chunk comes early and the rest over those seconds.
   */
  input: InferenceInput;
  /** Only its stream is slow (infer answers at once): the infer deadline check is skipped. */
  streamOnly?: boolean;
  /**
   * How many requests the model (or its server) is still working on. When given, the suite checks
   * that a cancelled or released stream, and a call past its deadline, stop the work there too:
   * this falls back to 0 promptly.
   */
  inFlight?(instance: LoadedInstance): number | Promise<number>;
}

/** What the suite needs to know about one backend. */
export interface BackendConformanceFixture {
  /**
   * The plugin: its definition (the module's default export), or a config `use:` the gateway's
   * loader resolves (a package name, or a path from the working folder).
   */
  plugin: PluginUnderTest<'backend'>;
  /** Plugin options as written in the config; validated by the plugin's schema like the host does. */
  options?: unknown;
  /** An instance that loads and serves. */
  spec: InstanceSpec;
  /**
   * One valid request for every task the instance serves. They must be deterministic (same
   * request, same answer: give a seed or temperature 0), since a stream is compared with infer.
   */
  requests: Partial<Record<InferenceTask, InferenceInput>>;
  /** More inputs the model must refuse with a 4xx McpError (beyond the bad tensors the suite derives from the signature). */
  invalid?: InferenceInput[];
  /** An instance whose server cannot be reached (remote backends), e.g. a closed port on 127.0.0.1. */
  unreachable?: InstanceSpec;
  /** A slow request, for the cancel and deadline checks. */
  slow?: SlowRequest;
  /** Called once after the suite (stop the servers the fixture started). */
  close?(): unknown;
}

/** The suite's checks, by id (for `knownGaps`). */
export type BackendCheck =
  | 'setup'
  | 'load'
  | 'infer'
  | 'stream'
  | 'concurrency'
  | 'cancel'
  | 'cancel-return'
  | 'deadline'
  | 'aborted-call'
  | 'health'
  | 'unsupported-task'
  | 'bad-input'
  | 'unreachable'
  | 'unload'
  | 'random-inputs';

export interface BackendConformanceOptions {
  /**
   * Checks the backend is known to fail for now. Each runs as an expected failure: it passes while
   * the backend fails it and fails once the backend passes, so the list stays honest.
   */
  knownGaps?: readonly BackendCheck[];
  /** Bound for what must end promptly (a cancelled stream, a call past its deadline, a health probe), ms. Generous by default: 10000. */
  promptMs?: number;
  /** Deadline of the slow request in the deadline check, ms (default 250). */
  deadlineMs?: number;
  /** Requests sent at once in the concurrency check (default 8). */
  concurrency?: number;
  /** fast-check runs of the random-input property (default 15). */
  numRuns?: number;
  /** Budget of the suite's set-up (plugin setup and loading the instances), ms (default 120000). */
  setupTimeoutMs?: number;
}

const FINISHED: ReadonlySet<FinishReason> = new Set<FinishReason>(['stop', 'length']);
const GENERATIVE: ReadonlySet<InferenceTask> = new Set<InferenceTask>(['generate', 'chat']);

/** A plausible request for a task, used where the instance must refuse the task. */
function genericRequest(task: InferenceTask): InferenceInput {
  switch (task) {
    case 'generate':
      return { task, prompt: 'Hello' };
    case 'chat':
      return { task, messages: [{ role: 'user', content: 'Hello' }] };
    case 'embed':
      return { task, texts: ['Hello'] };
    case 'tensor':
      return { task, tensors: [{ name: 'input', shape: [1, 1], datatype: 'FP32', data: [1] }] };
  }
}

/** Every failure is an McpError with a code from the table. */
function expectMcpError(err: unknown, what: string): McpError {
  expect(err instanceof McpError, `${what}: threw ${describeValue(err)}, not an McpError (the gateway masks it as MCP_INTERNAL)`).toBe(true);
  const e = err as McpError;
  expect(Object.prototype.hasOwnProperty.call(ERROR_CODES, e.code), `${what}: code ${String(e.code)} is not in ERROR_CODES`).toBe(true);
  expect(typeof e.retryable, `${what}: retryable`).toBe('boolean');
  expect(typeof e.mayHaveExecuted, `${what}: mayHaveExecuted`).toBe('boolean');
  expect(Number.isInteger(e.status), `${what}: status`).toBe(true);
  return e;
}

/** A refusal of the request itself: 4xx, and retrying it elsewhere cannot help. */
function expectClientError(err: unknown, what: string): McpError {
  const e = expectMcpError(err, what);
  expect(e.status >= 400 && e.status < 499, `${what}: ${e.code} has status ${e.status}, expected a 4xx refusal (${e.message})`).toBe(true);
  expect(e.retryable, `${what}: ${e.code} is retryable; a refused request fails the same on every instance`).toBe(false);
  return e;
}

/** The request certainly did not run: the router may retry it elsewhere, even for a model that is not idempotent. */
function expectNotExecuted(err: unknown, what: string): McpError {
  const e = expectMcpError(err, what);
  expect(e.retryable, `${what}: ${e.code} should be retryable (${e.message})`).toBe(true);
  expect(e.mayHaveExecuted, `${what}: ${e.code} should say mayHaveExecuted: false (${e.message})`).toBe(false);
  return e;
}

function expectCancelledOrDeadline(err: unknown, what: string): McpError {
  const e = expectMcpError(err, what);
  expect(['MCP_CANCELLED', 'MCP_DEADLINE_EXCEEDED'], `${what}: ${e.code} (${e.message})`).toContain(e.code);
  return e;
}

function checkUsage(usage: Usage | undefined, what: string): void {
  if (usage === undefined) return;
  expect(typeof usage, `${what}: usage`).toBe('object');
  for (const k of ['promptTokens', 'completionTokens', 'totalTokens'] as const) {
    const v = usage[k];
    expect(typeof v === 'number' && Number.isFinite(v) && v >= 0, `${what}: usage.${k} = ${describeValue(v)}`).toBe(true);
  }
}

function checkTensor(t: Tensor, what: string): void {
  expect(typeof t?.name === 'string' && t.name !== '', `${what}: tensor name ${describeValue(t?.name)}`).toBe(true);
  expect(Array.isArray(t.shape) && t.shape.every((d) => Number.isInteger(d) && d >= 0), `${what}: tensor ${t.name} shape ${describeValue(t.shape)}`).toBe(true);
  expect(DATATYPES, `${what}: tensor ${t.name} datatype`).toContain(t.datatype);
  expect(Array.isArray(t.data), `${what}: tensor ${t.name} data is not an array`).toBe(true);
  const n = t.shape.reduce((a, b) => a * b, 1);
  expect(t.data.length, `${what}: tensor ${t.name} has ${t.data.length} values for shape [${t.shape.join(',')}]`).toBe(n);
  const type = t.datatype === 'BYTES' ? 'string' : t.datatype === 'BOOL' ? 'boolean' : 'number';
  const wrong = t.data.findIndex((v) => typeof v !== type && !(type === 'boolean' && (v === 0 || v === 1)));
  expect(wrong, `${what}: tensor ${t.name} value ${wrong} is ${describeValue(t.data[wrong])}, expected a ${type}`).toBe(-1);
}

function checkSignature(sig: ModelSignature | undefined, what: string): void {
  if (sig === undefined) return;
  const list = (l: TensorSignature[], which: string) => {
    expect(Array.isArray(l), `${what}: signature.${which}`).toBe(true);
    for (const s of l) {
      expect(typeof s.name === 'string' && s.name !== '', `${what}: signature.${which} name`).toBe(true);
      expect(DATATYPES, `${what}: signature.${which} ${s.name} datatype`).toContain(s.datatype);
      expect(Array.isArray(s.shape) && s.shape.every((d) => Number.isInteger(d) && d >= -1), `${what}: signature.${which} ${s.name} shape`).toBe(true);
    }
  };
  list(sig.inputs, 'inputs');
  list(sig.outputs, 'outputs');
}

/** Checks an answer has the shape its task calls for. */
function checkOutput(inst: LoadedInstance, input: InferenceInput, out: InferenceOutput, what: string): void {
  expect(out !== null && typeof out === 'object', `${what}: the answer is ${describeValue(out)}`).toBe(true);
  if (GENERATIVE.has(input.task)) {
    expect(typeof out.text, `${what}: text`).toBe('string');
  } else if (input.task === 'embed') {
    expect(Array.isArray(out.embeddings), `${what}: embeddings`).toBe(true);
    expect(out.embeddings!.length, `${what}: one embedding per text`).toBe(input.texts?.length ?? 0);
    const dims = out.embeddings![0]?.length;
    for (const [i, e] of out.embeddings!.entries()) {
      const numbers = Array.isArray(e) && e.length > 0 && e.every((v) => typeof v === 'number' && Number.isFinite(v));
      expect(numbers, `${what}: embedding ${i} is not a non-empty array of finite numbers`).toBe(true);
      expect(e.length, `${what}: embedding ${i} has ${e.length} dimensions, embedding 0 has ${dims}`).toBe(dims);
    }
  } else if (input.task === 'tensor') {
    expect(Array.isArray(out.tensors) && out.tensors.length > 0, `${what}: tensors`).toBe(true);
    for (const t of out.tensors!) checkTensor(t, what);
    if (input.outputs && input.outputs.length > 0) {
      expect(
        out.tensors!.map((t) => t.name),
        `${what}: the outputs asked for`,
      ).toEqual(input.outputs);
    } else if (inst.signature && inst.signature.outputs.length > 0) {
      const names = inst.signature.outputs.map((s) => s.name);
      for (const t of out.tensors!) expect(names, `${what}: output ${t.name} is not in the signature`).toContain(t.name);
    }
  }
  if (out.finishReason !== undefined) expect([...FINISHED], `${what}: finishReason of an answer`).toContain(out.finishReason);
  checkUsage(out.usage, what);
}

interface Collected {
  chunks: InferenceChunk[];
  error?: unknown;
}

/** Reads a whole stream; a throw (when calling stream() or mid-way) is returned, not thrown. */
async function collect(inst: LoadedInstance, input: InferenceInput, call: BackendCall): Promise<Collected> {
  const chunks: InferenceChunk[] = [];
  try {
    for await (const c of inst.stream!(input, call)) chunks.push(c);
    return { chunks };
  } catch (error) {
    return { chunks, error };
  }
}

/** Where a cancelled stream or call must end: MCP_CANCELLED / MCP_DEADLINE_EXCEEDED, or a last chunk with finishReason 'cancelled'. */
function expectStoppedStream(r: Collected, what: string): void {
  if (r.error !== undefined) {
    expectCancelledOrDeadline(r.error, what);
    return;
  }
  const last = r.chunks.at(-1);
  expect(
    last?.finishReason,
    `${what}: the stream ended ${last?.finishReason ? `with finishReason '${last.finishReason}' (it ran to completion)` : 'silently, as if complete'}; ` +
      "a stopped stream must throw MCP_CANCELLED (or MCP_DEADLINE_EXCEEDED) or end with finishReason 'cancelled'",
  ).toBe('cancelled');
}

/** A tensor input the signature says is wrong: one dimension too many, an unknown name, too few values. */
function badTensorInputs(sig: ModelSignature): Array<{ why: string; input: InferenceInput }> {
  const valid = sig.inputs.map((s): Tensor => {
    const shape = s.shape.map((d) => (d === -1 ? 1 : d));
    const n = shape.reduce((a, b) => a * b, 1);
    const value = s.datatype === 'BYTES' ? 'x' : s.datatype === 'BOOL' ? false : 0;
    return { name: s.name, shape, datatype: s.datatype, data: new Array<number | string | boolean>(n).fill(value) };
  });
  if (valid.length === 0) return [];
  const [first, ...rest] = valid as [Tensor, ...Tensor[]];
  const out: Array<{ why: string; input: InferenceInput }> = [
    {
      why: 'one dimension too many',
      input: { task: 'tensor', tensors: [{ ...first, shape: [...first.shape, 2], data: [...first.data, ...first.data] }, ...rest] },
    },
    {
      why: 'an input the model does not have',
      input: { task: 'tensor', tensors: [...valid, { name: `${first.name}__not_an_input`, shape: [1], datatype: 'FP32', data: [1] }] },
    },
  ];
  const fixed = first.shape.findIndex((_, i) => sig.inputs[0]!.shape[i] !== -1);
  if (fixed >= 0) {
    const shape = first.shape.map((d, i) => (i === fixed ? d + 1 : d));
    const n = shape.reduce((a, b) => a * b, 1);
    out.push({
      why: `dimension ${fixed} is not the signature's ${first.shape[fixed]}`,
      input: { task: 'tensor', tensors: [{ ...first, shape, data: new Array(n).fill(first.data[0]) }, ...rest] },
    });
  }
  return out;
}

/** Random inputs in the domain the gateway validates (strings of any kind; tensors whose data fits their shape). */
function randomInputs(base: InferenceInput, sig: ModelSignature | undefined): fc.Arbitrary<InferenceInput> {
  const text = fc.oneof(
    fc.string({ maxLength: 60 }),
    fc.string({ unit: 'grapheme', maxLength: 30 }),
    fc.constantFrom('', ' ', '\n\n', '\u0000', '🦫'.repeat(20)),
  );
  switch (base.task) {
    case 'generate':
      return text.map((prompt) => ({ ...base, prompt }));
    case 'chat':
      return fc.array(text, { minLength: 1, maxLength: 3 }).map((cs) => ({ ...base, messages: cs.map((content) => ({ role: 'user' as const, content })) }));
    case 'embed':
      return fc.array(text, { minLength: 1, maxLength: 4 }).map((texts) => ({ ...base, texts }));
    case 'tensor': {
      const names = [...(sig?.inputs.map((s) => s.name) ?? []), ...(base.tensors?.map((t) => t.name) ?? []), 'x'];
      const tensor = fc
        .record({
          name: fc.constantFrom(...names),
          shape: fc.array(fc.integer({ min: 0, max: 5 }), { minLength: 0, maxLength: 3 }),
          datatype: fc.constantFrom<TensorDatatype>('FP32', 'INT32', 'BOOL', 'BYTES', 'FP64', 'UINT8'),
          seed: fc.integer({ min: 0, max: 1000 }),
          extra: fc.constantFrom(0, 0, 0, 1),
        })
        .map(({ name, shape, datatype, seed, extra }): Tensor => {
          const n = shape.reduce((a, b) => a * b, 1);
          const value = (i: number) => (datatype === 'BYTES' ? `v${i}` : datatype === 'BOOL' ? (i + seed) % 2 === 0 : ((i + seed) % 7) - 3);
          return { name, shape, datatype, data: Array.from({ length: n }, (_, i) => value(i)).slice(0, Math.max(0, n - extra)) };
        });
      const fromBase = fc.constant(base.tensors ?? []);
      const tensors = fc.oneof(
        fc.array(tensor, { minLength: 1, maxLength: 2 }),
        fromBase.chain((ts) => tensor.map((t) => [...ts.slice(1), t])),
      );
      return tensors.map((ts) => ({ task: 'tensor' as const, tensors: ts }));
    }
  }
}

/** Defines the backend conformance suite (call it at the top level of a test file). */
export function describeBackendConformance(
  name: string,
  fixture: BackendConformanceFixture | (() => BackendConformanceFixture | Promise<BackendConformanceFixture>),
  options: BackendConformanceOptions = {},
): void {
  const promptMs = options.promptMs ?? 10_000;
  const deadlineMs = options.deadlineMs ?? 250;
  const concurrency = options.concurrency ?? 8;
  const numRuns = options.numRuns ?? 15;
  const setupTimeoutMs = options.setupTimeoutMs ?? 120_000;
  /** Per-check budget: several prompt bounds, for machines far busier than the bounds assume. */
  const testTimeout = promptMs * 6;
  const gaps = new Set<BackendCheck>(options.knownGaps ?? []);
  const check = (id: BackendCheck, title: string, fn: (t: TestContext) => unknown, timeout?: number): void => {
    if (gaps.has(id)) it.fails(`${title} [known gap]`, fn, timeout);
    else it(title, fn, timeout);
  };

  describe(`backend conformance: ${name}`, () => {
    let fx: BackendConformanceFixture;
    let harness: PluginHarness<'backend'> | undefined;
    let backend: Backend;
    let inst: LoadedInstance;
    let slowInst: LoadedInstance | undefined;
    let loadError: unknown;
    /** The instance and request of a slow-request check; skips the check when the fixture gives none (or, for a stream check, when it does not stream). */
    const slowCase = (t: TestContext, streamed: boolean): { target: LoadedInstance; slow: SlowRequest } => {
      if (loadError !== undefined) throw loadError;
      const target = slowInst ?? inst;
      if (!fx.slow) t.skip('the fixture gives no slow request');
      if (streamed && !streams(target, fx.slow!.input.task)) t.skip('the instance does not stream the slow request');
      return { target, slow: fx.slow! };
    };
    let requestSeq = 0;
    const loaded: LoadedInstance[] = [];

    const call = (signal: AbortSignal = new AbortController().signal, deadline?: number): BackendCall => {
      const c: BackendCall = { requestId: `conformance-${name}-${++requestSeq}`, signal };
      if (deadline !== undefined) c.deadline = deadline;
      return c;
    };
    const load = async (spec: InstanceSpec): Promise<LoadedInstance> => {
      const i = await within(backend.load(spec, new AbortController().signal), setupTimeoutMs, `load(${spec.id})`);
      loaded.push(i);
      return i;
    };
    /** The fixture's request for each task the instance serves (the load check reports a missing one). */
    const requestsOf = (i: LoadedInstance): Array<[InferenceTask, InferenceInput]> =>
      i.tasks.flatMap((t) => (fx.requests[t] ? [[t, fx.requests[t]] as [InferenceTask, InferenceInput]] : []));
    const firstRequest = (i: LoadedInstance): [InferenceTask, InferenceInput] => {
      const first = requestsOf(i)[0];
      if (!first) throw new Error(`the fixture gives no request for any task the instance serves (${i.tasks.join(', ')})`);
      return first;
    };
    const streams = (i: LoadedInstance, task: InferenceTask) => typeof i.stream === 'function' && GENERATIVE.has(task);
    /** With `slow.inFlight`: waits until the model no longer works on slow requests (the backend let go of them). */
    const released = async (i: LoadedInstance, what: string): Promise<void> => {
      const inFlight = fx.slow?.inFlight;
      if (!inFlight) return;
      await until(async () => (await inFlight(i)) === 0, promptMs, `${what}: the model still works on it (slow.inFlight is not 0)`);
    };

    beforeAll(async () => {
      fx = typeof fixture === 'function' ? await fixture() : fixture;
      harness = await setUpPlugin('backend', fx.plugin, fx.options);
      backend = harness.capability;
      try {
        inst = await load(fx.spec);
        if (fx.slow?.spec) slowInst = await load(fx.slow.spec);
      } catch (err) {
        loadError = err;
      }
    }, setupTimeoutMs);

    afterAll(async () => {
      await Promise.allSettled(loaded.map((i) => i.unload()));
      await harness?.close();
      await fx?.close?.();
    }, setupTimeoutMs);

    check(
      'setup',
      'setup gives a backend: load(), instanceOptions accepting the spec, devices()',
      async () => {
        expect(typeof backend.load).toBe('function');
        if (backend.instanceOptions) {
          const r = backend.instanceOptions.safeParse(fx.spec.options);
          expect(r.success, `instanceOptions refuses the fixture spec's options: ${r.success ? '' : r.error.message}`).toBe(true);
        }
        if (backend.devices) {
          const devices = await backend.devices();
          expect(Array.isArray(devices)).toBe(true);
          for (const d of devices) {
            expect(typeof d.id === 'string' && d.id !== '', `device id ${describeValue(d.id)}`).toBe(true);
            expect(['cpu', 'gpu', 'tpu', 'remote']).toContain(d.kind);
          }
        }
        for (const report of await within(harness!.health(), promptMs, 'the plugin health checks')) {
          expect(report.ok, `plugin health check: ${report.detail ?? ''}`).toBe(true);
        }
      },
      testTimeout,
    );

    check('load', 'load returns a LoadedInstance with runtime, device, tasks (and a well-formed signature)', () => {
      if (loadError !== undefined) throw loadError;
      for (const i of [inst, slowInst]) {
        if (!i) continue;
        expect(typeof i.runtime === 'string' && i.runtime !== '', `runtime ${describeValue(i.runtime)}`).toBe(true);
        expect(typeof i.device === 'string' && i.device !== '', `device ${describeValue(i.device)}`).toBe(true);
        expect(Array.isArray(i.tasks) && i.tasks.length > 0, `tasks ${describeValue(i.tasks)}`).toBe(true);
        for (const t of i.tasks) expect(TASKS, 'task').toContain(t);
        expect(new Set(i.tasks).size, 'tasks are listed once each').toBe(i.tasks.length);
        for (const fn of ['infer', 'health', 'unload'] as const) expect(typeof i[fn], fn).toBe('function');
        if (i.stream !== undefined) expect(typeof i.stream, 'stream').toBe('function');
        checkSignature(i.signature, 'signature');
      }
      for (const t of inst.tasks) expect(fx.requests[t], `the fixture gives no request for task '${t}', which the instance serves`).toBeDefined();
      for (const t of Object.keys(fx.requests) as InferenceTask[]) {
        expect(inst.tasks, `the fixture gives a '${t}' request, but the instance does not serve '${t}'`).toContain(t);
      }
    });

    check(
      'infer',
      'infer answers each task it serves with the right output shape',
      async () => {
        if (loadError !== undefined) throw loadError;
        for (const [task, input] of requestsOf(inst)) {
          const r = await within(settle(inst.infer(input, call())), testTimeout, `infer(${task})`);
          if (!r.ok) {
            expectMcpError(r.error, `infer(${task})`);
            throw r.error;
          }
          checkOutput(inst, input, r.value, `infer(${task})`);
        }
      },
      testTimeout,
    );

    check(
      'stream',
      'stream yields chunks that concatenate to the answer; only the last has finishReason (and usage when reported)',
      async (t) => {
        if (loadError !== undefined) throw loadError;
        const tasks = requestsOf(inst).filter(([task]) => streams(inst, task));
        if (tasks.length === 0) t.skip('the instance does not stream');
        for (const [task, input] of tasks) {
          const answer = await inst.infer(input, call());
          const r = await within(collect(inst, input, call()), testTimeout, `stream(${task})`);
          if (r.error !== undefined) {
            expectMcpError(r.error, `stream(${task})`);
            throw r.error;
          }
          expect(r.chunks.length, `stream(${task}) yielded nothing`).toBeGreaterThan(0);
          for (const [i, c] of r.chunks.entries()) {
            expect(typeof c?.text, `stream(${task}) chunk ${i} text`).toBe('string');
            if (i < r.chunks.length - 1) expect(c.finishReason, `stream(${task}) chunk ${i} of ${r.chunks.length} has finishReason`).toBeUndefined();
            checkUsage(c.usage, `stream(${task}) chunk ${i}`);
          }
          const last = r.chunks.at(-1)!;
          expect([...FINISHED], `stream(${task}): the last chunk's finishReason`).toContain(last.finishReason);
          expect(r.chunks.map((c) => c.text).join(''), `stream(${task}): the chunks do not add up to infer's text`).toBe(answer.text);
          if (answer.usage) expect(last.usage, `stream(${task}): infer reports usage, the last chunk has none`).toBeDefined();
        }
      },
      testTimeout,
    );

    check(
      'concurrency',
      `answers ${concurrency} concurrent requests of each task`,
      async () => {
        if (loadError !== undefined) throw loadError;
        for (const [task, input] of requestsOf(inst)) {
          const all = Promise.all(Array.from({ length: concurrency }, () => settle(inst.infer(input, call()))));
          const answers = await within(all, testTimeout, `${concurrency} concurrent infer(${task})`);
          for (const [i, r] of answers.entries()) {
            if (!r.ok) {
              expectMcpError(r.error, `concurrent infer(${task}) #${i}`);
              throw r.error;
            }
            checkOutput(inst, input, r.value, `concurrent infer(${task}) #${i}`);
          }
        }
      },
      testTimeout,
    );

    const cancelTitle = 'cancel mid-stream: aborting the signal after the first chunk ends the stream promptly; the backend stays usable';
    check(
      'cancel',
      cancelTitle,
      async (t) => {
        const { target, slow } = slowCase(t, true);
        await released(target, 'before the check');
        const ac = new AbortController();
        const what = 'the slow stream, aborted after its first chunk';
        const iterator = (async function* () {
          yield* target.stream!(slow.input, call(ac.signal));
        })()[Symbol.asyncIterator]();
        const first = await within(settle(iterator.next()), promptMs, 'the first chunk of the slow stream');
        if (!first.ok) {
          expectMcpError(first.error, 'the slow stream');
          throw first.error;
        }
        expect(first.value.done, 'the slow stream ended before its first chunk').toBe(false);
        expect(first.value.value?.finishReason, 'the slow stream finished in its first chunk: it is not slow').toBeUndefined();
        ac.abort();
        const rest: Collected = { chunks: [] };
        const drained = await within(
          settle(async () => {
            for (let r = await iterator.next(); !r.done; r = await iterator.next()) rest.chunks.push(r.value);
          }),
          promptMs,
          what,
        );
        if (!drained.ok) rest.error = drained.error;
        expectStoppedStream(rest, what);
        await released(target, what);
        const [task, input] = firstRequest(inst);
        const next = `infer(${task}) after a cancelled stream`;
        checkOutput(inst, input, await within(inst.infer(input, call()), testTimeout, next), next);
      },
      testTimeout,
    );

    check(
      'cancel-return',
      "cancel mid-stream: the iterator's return() after the first chunk releases it promptly; the backend stays usable",
      async (t) => {
        const { target, slow } = slowCase(t, true);
        await released(target, 'before the check');
        const iterator = target.stream!(slow.input, call())[Symbol.asyncIterator]();
        expect(typeof iterator.return, 'the stream iterator has no return(): a consumer that stops reading cannot release it').toBe('function');
        const first = await within(settle(iterator.next()), promptMs, 'the first chunk of the slow stream');
        if (!first.ok) {
          expectMcpError(first.error, 'the slow stream');
          throw first.error;
        }
        expect(first.value.done, 'the slow stream ended before its first chunk').toBe(false);
        const returned = await within(settle(iterator.return!()), promptMs, "the slow stream's return()");
        if (!returned.ok) expectMcpError(returned.error, "the slow stream's return()");
        const after = await within(settle(iterator.next()), promptMs, 'next() after return()');
        expect(after.ok && after.value.done, 'next() after return() should report done').toBe(true);
        await released(target, 'the slow stream after return()');
        const [task, input] = firstRequest(inst);
        const what = `infer(${task}) after a released stream`;
        checkOutput(inst, input, await within(inst.infer(input, call()), testTimeout, what), what);
        // the instance that streamed takes a new stream too
        const again = target.stream!(slow.input, call())[Symbol.asyncIterator]();
        const next = await within(settle(again.next()), promptMs, 'a new stream on the instance after return()');
        if (!next.ok) {
          expectMcpError(next.error, 'a new stream after return()');
          throw next.error;
        }
        await within(Promise.resolve(again.return?.()), promptMs, 'return() of the new stream');
        await released(target, 'the new stream after return()');
      },
      testTimeout,
    );

    check(
      'deadline',
      'deadline: a call whose signal times out fails with MCP_DEADLINE_EXCEEDED or MCP_CANCELLED, never hangs',
      async (t) => {
        const { target, slow } = slowCase(t, false);
        const timed = () => call(AbortSignal.timeout(deadlineMs), Date.now() + deadlineMs);
        await released(target, 'before the check');
        let checked = false;
        if (!slow.streamOnly) {
          const r = await within(settle(target.infer(slow.input, timed())), deadlineMs + promptMs, 'infer past its deadline');
          expect(r.ok, `infer of the slow request answered although its ${deadlineMs} ms deadline passed`).toBe(false);
          if (!r.ok) expectCancelledOrDeadline(r.error, 'infer past its deadline');
          await released(target, 'infer past its deadline');
          checked = true;
        }
        if (streams(target, slow.input.task)) {
          const r = await within(collect(target, slow.input, timed()), deadlineMs + promptMs, 'a stream past its deadline');
          expectStoppedStream(r, 'a stream past its deadline');
          await released(target, 'a stream past its deadline');
          checked = true;
        }
        if (!checked) t.skip('the slow request is slow only as a stream and the instance does not stream it');
      },
      testTimeout,
    );

    check(
      'aborted-call',
      'a call whose signal has already aborted ends at once: MCP_CANCELLED / MCP_DEADLINE_EXCEEDED, or an answer',
      async () => {
        if (loadError !== undefined) throw loadError;
        for (const [task, input] of requestsOf(inst)) {
          const r = await within(settle(inst.infer(input, call(AbortSignal.abort(), Date.now() - 1))), promptMs, `infer(${task}) with an aborted signal`);
          if (r.ok) checkOutput(inst, input, r.value, `infer(${task}) with an aborted signal`);
          else expectCancelledOrDeadline(r.error, `infer(${task}) with an aborted signal`);
          if (!streams(inst, task)) continue;
          const s = await within(collect(inst, input, call(AbortSignal.abort(), Date.now() - 1)), promptMs, `stream(${task}) with an aborted signal`);
          const stopped = s.error !== undefined || s.chunks.at(-1)?.finishReason === 'cancelled' || s.chunks.length === 0;
          if (stopped) expectStoppedStream(s, `stream(${task}) with an aborted signal`);
        }
      },
      testTimeout,
    );

    check(
      'health',
      'health: a serving instance reports ok, promptly',
      async () => {
        if (loadError !== undefined) throw loadError;
        const r = await within(settle(inst.health(AbortSignal.timeout(promptMs))), promptMs, 'health()');
        if (!r.ok) {
          expectMcpError(r.error, 'health()');
          throw new Error(`health() threw instead of returning a report: ${describeValue(r.error)}`);
        }
        expect(r.value.ok, `health() of a serving instance: ${r.value.detail ?? ''}`).toBe(true);
        if (r.value.detail !== undefined) expect(typeof r.value.detail).toBe('string');
      },
      testTimeout,
    );

    check(
      'unsupported-task',
      'refuses a task the instance does not serve with a 4xx McpError, not a crash',
      async (t) => {
        if (loadError !== undefined) throw loadError;
        const others = TASKS.filter((task) => !inst.tasks.includes(task));
        if (others.length === 0) t.skip('the instance serves every task');
        for (const task of others) {
          const r = await within(settle(inst.infer(genericRequest(task), call())), promptMs, `infer(${task})`);
          expect(r.ok, `infer(${task}) answered, but the instance serves only ${inst.tasks.join(', ')}`).toBe(false);
          if (!r.ok) expectClientError(r.error, `infer(${task}) on an instance that does not serve it`);
          if (typeof inst.stream !== 'function') continue;
          const s = await within(collect(inst, genericRequest(task), call()), promptMs, `stream(${task})`);
          expect(s.error, `stream(${task}) was served, but the instance serves only ${inst.tasks.join(', ')}`).toBeDefined();
          expectClientError(s.error, `stream(${task}) on an instance that does not serve it`);
        }
      },
      testTimeout,
    );

    check(
      'bad-input',
      'refuses bad input (e.g. a tensor that does not fit the signature) with a 4xx McpError',
      async (t) => {
        if (loadError !== undefined) throw loadError;
        const cases = [
          ...(inst.tasks.includes('tensor') && inst.signature ? badTensorInputs(inst.signature) : []),
          ...(fx.invalid ?? []).map((input, i) => ({ why: `fixture invalid[${i}]`, input })),
        ];
        if (cases.length === 0) t.skip('no signature to derive bad tensors from, and the fixture gives no invalid inputs');
        for (const { why, input } of cases) {
          const r = await within(settle(inst.infer(input, call())), promptMs, `infer(${why})`);
          expect(r.ok, `infer with ${why} answered ${describeValue(r.ok ? r.value : undefined).slice(0, 200)}`).toBe(false);
          if (!r.ok) expectClientError(r.error, `infer with ${why}`);
        }
      },
      testTimeout,
    );

    check(
      'unreachable',
      'unreachable server: health is a report (never a throw); infer fails retryable with mayHaveExecuted false',
      async (t) => {
        if (!fx.unreachable) t.skip('the fixture gives no unreachable spec (a local backend)');
        const l = await within(settle(backend.load(fx.unreachable!, new AbortController().signal)), promptMs * 2, 'load() of an unreachable instance');
        if (!l.ok) {
          // Refusing to load is fine, as an McpError the fleet can report and retry.
          const e = expectMcpError(l.error, 'load() of an unreachable instance');
          expect(e.retryable, `load() of an unreachable instance: ${e.code} should be retryable (the server may come back)`).toBe(true);
          return;
        }
        const u = l.value;
        loaded.push(u);
        const h = await within(settle(u.health(AbortSignal.timeout(promptMs))), promptMs * 2, 'health() of an unreachable instance');
        if (!h.ok) throw new Error(`health() of an unreachable instance threw instead of returning a report: ${describeValue(h.error)}`);
        expect(h.value.ok, 'health() of an unreachable instance says ok').toBe(false);
        const tasks = u.tasks.length > 0 ? u.tasks.filter((task) => fx.requests[task]) : (Object.keys(fx.requests) as InferenceTask[]);
        for (const [task, input] of tasks.map((task) => [task, fx.requests[task]!] as const)) {
          const r = await within(settle(u.infer(input, call())), promptMs * 2, `infer(${task}) on an unreachable instance`);
          expect(r.ok, `infer(${task}) on an unreachable instance answered`).toBe(false);
          if (!r.ok) expectNotExecuted(r.error, `infer(${task}) on an unreachable instance`);
          if (!streams(u, task)) continue;
          const s = await within(collect(u, input, call()), promptMs * 2, `stream(${task}) on an unreachable instance`);
          expectNotExecuted(s.error, `stream(${task}) on an unreachable instance`);
        }
      },
      testTimeout,
    );

    check(
      'unload',
      'unload: then infer fails retryable with mayHaveExecuted false; health is a report; unload twice is safe',
      async () => {
        if (loadError !== undefined) throw loadError;
        const u = await load(fx.spec);
        const [task0, input0] = firstRequest(u);
        checkOutput(u, input0, await u.infer(input0, call()), `infer(${task0}) before unload`);
        await within(u.unload(), promptMs, 'unload()');
        for (const [task, input] of requestsOf(u)) {
          const r = await within(settle(u.infer(input, call())), promptMs, `infer(${task}) after unload`);
          expect(r.ok, `infer(${task}) answered after unload()`).toBe(false);
          if (!r.ok) expectNotExecuted(r.error, `infer(${task}) after unload`);
          if (!streams(u, task)) continue;
          const s = await within(collect(u, input, call()), promptMs, `stream(${task}) after unload`);
          expect(s.error, `stream(${task}) was served after unload()`).toBeDefined();
          expectNotExecuted(s.error, `stream(${task}) after unload`);
        }
        const h = await within(settle(u.health(AbortSignal.timeout(promptMs))), promptMs, 'health() after unload');
        if (!h.ok) throw new Error(`health() after unload threw instead of returning a report: ${describeValue(h.error)}`);
        expect(typeof h.value.ok).toBe('boolean');
        const again = await within(settle(u.unload()), promptMs, 'a second unload()');
        expect(again.ok, `a second unload() threw ${describeValue(again.ok ? undefined : again.error)}`).toBe(true);
        // the other instances of the backend are not affected
        checkOutput(inst, input0, await inst.infer(input0, call()), `infer(${task0}) on another instance after an unload`);
      },
      testTimeout,
    );

    check(
      'random-inputs',
      'never crashes on random inputs: an answer of the right shape, or a 4xx McpError',
      async () => {
        if (loadError !== undefined) throw loadError;
        for (const [task, input] of requestsOf(inst)) {
          await fc.assert(
            fc.asyncProperty(randomInputs(input, inst.signature), async (random) => {
              const r = await within(settle(inst.infer(random, call())), testTimeout, `infer(${task}) of a random input`);
              if (r.ok) checkOutput(inst, random, r.value, `infer(${task}) of ${JSON.stringify(random).slice(0, 300)}`);
              else expectClientError(r.error, `infer(${task}) of ${JSON.stringify(random).slice(0, 300)}`);
            }),
            { numRuns },
          );
        }
      },
      testTimeout,
    );
  });
}
