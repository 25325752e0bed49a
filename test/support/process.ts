/** A long-running child process (a gateway, a replica script) started for a test and awaited until it says it is ready. */
import { spawn, type ChildProcess } from 'node:child_process';

export interface ReadyProcess {
  child: ChildProcess;
  /** The match of the ready pattern (its groups: a URL, an id, …). */
  ready: RegExpExecArray;
  /** Everything it printed so far, stdout and stderr together. */
  output(): string;
}

/**
 * Starts `node <argv…>` and resolves once its output matches `ready` (rejects when it exits first or after
 * `timeoutMs`, with the tail of its output). `env` is added to this process's environment.
 */
export function startReadyProcess(
  argv: string[],
  opts: { ready: RegExp; cwd?: string; env?: Record<string, string>; timeoutMs?: number },
): Promise<ReadyProcess> {
  const child = spawn(process.execPath, argv, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`no ${opts.ready} within ${opts.timeoutMs ?? 60_000} ms: ${out.slice(-2000)}`)), opts.timeoutMs ?? 60_000);
    const onExit = (code: number | null) => fail(new Error(`exited ${code} before ${opts.ready}: ${out.slice(-2000)}`));
    const fail = (err: Error) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(err);
    };
    child.once('exit', onExit);
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = opts.ready.exec(out);
      if (!m) return;
      clearTimeout(timer);
      child.off('exit', onExit);
      resolve({ child, ready: m, output: () => out });
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
  });
}
