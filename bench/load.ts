/**
 * What the HTTP benches share (bench/overhead.ts, bench/cache.ts): the output folder and `--name=value`
 * arguments, child processes killed when the bench exits, a loopback server started with tsx that
 * reports its port over IPC (the fake upstream), load from wrk (autocannon when wrk is missing) in a
 * separate process, and the latency of sequential requests on one keep-alive connection.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from 'undici';

export const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
/** Scratch files of the benches (configs, wrk scripts, data folders). */
export const OUT = join(ROOT, 'bench/.out');
mkdirSync(OUT, { recursive: true });

/** The value of `--name=value` on the command line, or `dflt`. */
export const arg = (name: string, dflt: string): string => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? dflt;

/** Child processes of the bench: killed when it exits. */
export const children: ChildProcess[] = [];
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
});

/** Runs a TypeScript server (`file`, relative to the repository) that sends `{ port }` over IPC once it listens. */
export function startNode(file: string, env: Record<string, string> = {}, extraArgs: string[] = []): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [...extraArgs, '--import', 'tsx', join(ROOT, file)], {
    cwd: ROOT,
    env: { ...process.env, ...env, NODE_ENV: 'production' },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  children.push(child);
  return new Promise((res, rej) => {
    child.once('message', (m: { port: number }) => res({ child, port: m.port }));
    child.once('exit', (code) => rej(new Error(`${file} exited with ${code}`)));
  });
}

/** One POST target of the load. */
export interface LoadTarget {
  key: string;
  label: string;
  url: string;
  headers: Record<string, string>;
  body: string;
}

export interface LoadResult {
  requests: number;
  rps: number;
  p50: number;
  p99: number;
  /** Non-2xx answers and socket errors. */
  errors: number;
}

export const HAS_WRK = (() => {
  try {
    execFileSync('wrk', ['--version'], { stdio: 'ignore' });
    return true;
  } catch (e) {
    return (e as { status?: number }).status === 1;
  }
})();

function toMs(v: string, unit: string): number {
  const n = Number(v);
  return unit === 'us' ? n / 1000 : unit === 's' ? n * 1000 : n;
}

/** Runs wrk (or autocannon) against the target for `seconds` with `connections` connections, in a child process. */
export function load(t: LoadTarget, seconds: number, connections: number): Promise<LoadResult> {
  if (HAS_WRK) {
    const lua = join(OUT, `wrk-${basename(process.argv[1] ?? 'bench', '.ts')}-${t.key}.lua`);
    writeFileSync(
      lua,
      [
        'wrk.method = "POST"',
        `wrk.body = [==[${t.body}]==]`,
        ...Object.entries({ 'content-type': 'application/json', ...t.headers }).map(([k, v]) => `wrk.headers["${k}"] = [==[${v}]==]`),
      ].join('\n'),
    );
    return new Promise((res, rej) => {
      const p = spawn('wrk', ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency', '-s', lua, t.url], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      p.stdout.on('data', (c: Buffer) => {
        out += c.toString();
      });
      p.once('exit', (code) => {
        if (code !== 0) return rej(new Error(`wrk exited ${code}: ${out}`));
        const lat = (pct: string) => {
          const m = new RegExp(`^\\s+${pct}%\\s+([\\d.]+)(us|ms|s)\\s*$`, 'm').exec(out);
          return m ? toMs(m[1]!, m[2]!) : NaN;
        };
        res({
          requests: Number(/(\d+) requests in/.exec(out)?.[1] ?? 0),
          rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0),
          p50: lat('50'),
          p99: lat('99'),
          errors:
            Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0) +
            Number(
              /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/
                .exec(out)
                ?.slice(1)
                .reduce((a, b) => a + Number(b), 0) ?? 0,
            ),
        });
      });
    });
  }
  return new Promise((res, rej) => {
    const p = spawn(
      process.execPath,
      [
        join(ROOT, 'node_modules/autocannon/autocannon.js'),
        '-j',
        '-c',
        String(connections),
        '-d',
        String(seconds),
        '-m',
        'POST',
        '-b',
        t.body,
        ...Object.entries({ 'content-type': 'application/json', ...t.headers }).flatMap(([k, v]) => ['-H', `${k}=${v}`]),
        t.url,
      ],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    let out = '';
    p.stdout.on('data', (c: Buffer) => {
      out += c.toString();
    });
    p.once('exit', (code) => {
      if (code !== 0) return rej(new Error(`autocannon exited ${code}`));
      const j = JSON.parse(out) as { requests: { total: number; average: number }; latency: { p50: number; p99: number }; non2xx: number; errors: number };
      res({ requests: j.requests.total, rps: j.requests.average, p50: j.latency.p50, p99: j.latency.p99, errors: j.non2xx + j.errors });
    });
  });
}

/** p50/p99 of `n` sequential requests on one keep-alive connection (concurrency 1) after 200 to warm up, ms. */
export async function latencyC1(t: LoadTarget, n: number): Promise<{ p50: number; p99: number }> {
  const u = new URL(t.url);
  const client = new Client(u.origin, { pipelining: 1 });
  const headers = { 'content-type': 'application/json', ...t.headers };
  const once = async () => {
    const r = await client.request({ method: 'POST', path: u.pathname, headers, body: t.body });
    await r.body.text();
    if (r.statusCode !== 200) throw new Error(`${t.label}: status ${r.statusCode}`);
  };
  for (let i = 0; i < 200; i++) await once();
  const xs: number[] = [];
  for (let i = 0; i < n; i++) {
    const s = process.hrtime.bigint();
    await once();
    xs.push(Number(process.hrtime.bigint() - s) / 1e6);
  }
  await client.close();
  xs.sort((a, b) => a - b);
  return { p50: xs[Math.floor(n * 0.5)]!, p99: xs[Math.floor(n * 0.99)]! };
}

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
