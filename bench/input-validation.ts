/**
 * Cost of validating one inference input, as every entry point does once per request
 * (`buildInferenceRequest`: the input schema, then the request around it). Run:
 * `npx tsx bench/input-validation.ts` (options: --quick).
 *
 * Inputs: a chat turn, a prompt with parameters, 16 texts to embed, and FP32 tensors of 1k,
 * 64k and 1M elements (KServe-style, as a JSON body decodes them). Reported: µs per input
 * (median of 5 runs), and for tensors ns per element.
 */
import { buildInferenceRequest } from '../src/inference/request.ts';

const quick = process.argv.includes('--quick');
const RUNS = 5;
const signal = new AbortController().signal;

const floats = (n: number) => Array.from({ length: n }, (_, i) => (i % 251) / 7);
const tensorInput = (n: number) => ({ task: 'tensor', tensors: [{ name: 'x', shape: [n / 1024, 1024], datatype: 'FP32', data: floats(n) }] });

const cases: Array<{ label: string; input: unknown; elements?: number; iter: number }> = [
  {
    label: 'chat, 1 message',
    input: { task: 'chat', messages: [{ role: 'user', content: 'Hello there, how are you?' }], parameters: { maxTokens: 64, temperature: 0.7 } },
    iter: 200_000,
  },
  {
    label: 'generate, with parameters',
    input: { task: 'generate', prompt: 'The capybara', parameters: { maxTokens: 40, seed: 11, temperature: 0.8, stop: ['\n'] } },
    iter: 200_000,
  },
  { label: 'embed, 16 texts', input: { task: 'embed', texts: Array.from({ length: 16 }, (_, i) => `text number ${i}`) }, iter: 100_000 },
  { label: 'tensor, 1k FP32', input: tensorInput(1 << 10), elements: 1 << 10, iter: 50_000 },
  { label: 'tensor, 64k FP32', input: tensorInput(1 << 16), elements: 1 << 16, iter: 1_000 },
  { label: 'tensor, 1M FP32', input: tensorInput(1 << 20), elements: 1 << 20, iter: 40 },
];

let sink = 0;
function run(input: unknown, iter: number): number {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < iter; i++) sink += buildInferenceRequest({ model: 'm', input, entry: 'bench', signal }).input.task.length;
  return Number(process.hrtime.bigint() - t0) / 1000 / iter;
}

console.log(`node ${process.version}, ${RUNS} runs, median\n`);
console.log('| input | µs per input | ns per element |');
console.log('|---|---:|---:|');
for (const c of cases) {
  const iter = quick ? Math.max(5, Math.ceil(c.iter / 10)) : c.iter;
  run(c.input, Math.max(5, Math.ceil(iter / 10))); // warm-up
  const times = Array.from({ length: RUNS }, () => run(c.input, iter)).sort((a, b) => a - b);
  const us = times[Math.floor(RUNS / 2)]!;
  console.log(`| ${c.label} | ${us < 10 ? us.toFixed(2) : us.toFixed(0)} | ${c.elements ? ((us * 1000) / c.elements).toFixed(1) : ''} |`);
}
if (sink === -1) console.log(sink);
