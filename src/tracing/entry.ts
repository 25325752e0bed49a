import type { InferenceTrace } from './inference-trace.ts';
import type { EntryInfo, Tracing } from './tracing.ts';

type Headers = Parameters<Tracing['begin']>[1];

/**
 * Runs an inference entry handler inside its entry span when tracing is on (`tracing` defined);
 * otherwise runs it with no trace and creates nothing. A failure the service did not see (auth,
 * validation) ends the span with its code.
 */
export function traced<T>(tracing: Tracing | undefined, info: EntryInfo, headers: Headers, run: (trace: InferenceTrace | undefined) => Promise<T>): Promise<T> {
  return tracing ? runTraced(tracing.begin(info, headers), run) : run(undefined);
}

async function runTraced<T>(trace: InferenceTrace, run: (trace: InferenceTrace) => Promise<T>): Promise<T> {
  try {
    const out = await run(trace);
    trace.finished({ ok: true });
    return out;
  } catch (err) {
    trace.failed(err);
    throw err;
  }
}

/** Authentication inside the request's `auth` span when it is traced. */
export function tracedAuth<T>(trace: InferenceTrace | undefined, work: Promise<T>): Promise<T> {
  return trace ? trace.auth(work) : work;
}
