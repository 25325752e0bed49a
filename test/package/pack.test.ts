/**
 * The package as a user gets it. A fresh build is packed with `npm pack` and installed into an empty
 * project, where a balancer plugin written against `capibara-mcp/sdk` type-checks against the shipped
 * declarations, passes `capibara-mcp/testing`'s balancer suite in the project's own vitest run, and
 * routes requests when the installed `capibara-mcp start` loads it from a config file.
 *
 * Installing: the tarball is unpacked into node_modules/capibara-mcp as npm lays it out, and the
 * dependencies its package.json declares (plus vitest, fast-check, @types/node) are linked from this
 * checkout's node_modules: same versions, no registry needed, and a dependency the package uses
 * without declaring it is still missing there.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeOpenAI, type FakeOpenAIServer } from 'capibara-mcp/testing';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const NODE_MODULES = join(ROOT, 'node_modules');
const TSC = join(NODE_MODULES, 'typescript/bin/tsc');
const VITEST = join(NODE_MODULES, 'vitest/vitest.mjs');

interface Run {
  code: number | null;
  out: string;
}

/** Runs a command to its end, collecting stdout and stderr; the environment is this one without vitest's own variables. */
function run(cmd: string, args: string[], cwd: string): Promise<Run> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VITEST') && k !== 'NODE_OPTIONS'));
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, out }));
  });
}

const PLUGIN = `/** A third-party balancer: rendezvous hashing on the affinity key, a seeded random pick without one. */
import { z } from 'zod';
import { definePlugin, type BalanceContext, type Balancer, type BalancerCandidate, type BalancerPick } from 'capibara-mcp';
import { effectiveExclude, hash32, mulberry32 } from 'capibara-mcp/sdk';

export const stickyOptions = z.strictObject({ seed: z.number().int().default(1) });

export function createSticky(options: z.output<typeof stickyOptions>): Balancer {
  const random = mulberry32(options.seed);
  return {
    pick<C extends BalancerCandidate>(candidates: readonly C[], context: BalanceContext): BalancerPick<C> {
      const exclude = effectiveExclude(candidates, context.exclude);
      const key = context.affinityKey;
      let chosen = candidates[0]!;
      let best = -1;
      for (const c of candidates) {
        if (exclude?.has(c.id)) continue;
        const score = key ? hash32(key, hash32(c.id)) : random();
        if (score > best) { chosen = c; best = score; }
      }
      return { chosen, scores: { [chosen.id]: best } };
    },
  };
}

export default definePlugin({
  name: 'sticky',
  kind: 'balancer',
  apiVersion: '^1.0.0',
  description: 'Rendezvous hashing on the affinity key',
  options: stickyOptions,
  setup: (_ctx, options) => createSticky(options),
});
`;

const CONFORMANCE = `import { describeBalancerConformance, testPluginContext } from 'capibara-mcp/testing';
import plugin from './capibara-balancer-sticky/index.js';

describeBalancerConformance('sticky', () => plugin.setup(testPluginContext('sticky'), plugin.options.parse({})));
`;

/** Proves the declarations are the real ones: with \`any\` types, neither line would be an error. */
const TYPE_CHECKS = `import { definePlugin, McpError, type InferenceOutput } from 'capibara-mcp';
import { UpstreamClient } from 'capibara-mcp/sdk';
import { z } from 'zod';

// @ts-expect-error -- 'sorter' is not a capability kind
definePlugin({ name: 'typo', kind: 'sorter', apiVersion: '^1.0.0', options: z.object({}), setup: () => ({}) });
// @ts-expect-error -- an inference output has no 'answer'
export const output: InferenceOutput = { answer: 42 };
export const client: UpstreamClient = new UpstreamClient({});
export const error: McpError = new McpError('MCP_UPSTREAM_ERROR', 'upstream said no');
`;

const TSCONFIG = {
  compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, skipLibCheck: true, types: ['node'] },
  include: ['capibara-balancer-sticky/*.ts', '*.ts'],
};

let work: string;
let app: string;
let packed: { filename: string; size: number; files: Array<{ path: string }> };
let typecheck: Run;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'mcp-pack-'));
  // A package folder like a checkout after `prepare`: built here, not into the checkout's dist/, which other tests run from.
  const pkgDir = join(work, 'capibara-mcp');
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { files: string[]; dependencies: Record<string, string> };
  const build = await run(process.execPath, [join(ROOT, 'scripts/build.mjs'), join(pkgDir, 'dist')], ROOT);
  if (build.code !== 0) throw new Error(`build failed:\n${build.out}`);
  cpSync(join(ROOT, 'package.json'), join(pkgDir, 'package.json'));
  for (const entry of pkg.files) if (!entry.startsWith('!') && !entry.startsWith('dist/')) cpSync(join(ROOT, entry), join(pkgDir, entry), { recursive: true });
  const pack = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], pkgDir);
  if (pack.code !== 0) throw new Error(`npm pack failed:\n${pack.out}`);
  packed = (JSON.parse(pack.out.slice(pack.out.indexOf('['))) as Array<typeof packed>)[0]!;

  app = join(work, 'app');
  const installed = join(app, 'node_modules/capibara-mcp');
  mkdirSync(installed, { recursive: true });
  const untar = await run('tar', ['-xzf', join(work, packed.filename), '-C', installed, '--strip-components=1'], work);
  if (untar.code !== 0) throw new Error(`tar failed:\n${untar.out}`);
  for (const dep of [...Object.keys(pkg.dependencies), 'vitest', 'fast-check', '@types/node']) {
    const link = join(app, 'node_modules', dep);
    mkdirSync(dirname(link), { recursive: true });
    symlinkSync(join(NODE_MODULES, dep), link, 'dir');
  }
  writeFileSync(
    join(app, 'package.json'),
    JSON.stringify({ name: 'app', private: true, type: 'module', dependencies: { 'capibara-mcp': `file:${packed.filename}` } }),
  );
  mkdirSync(join(app, 'capibara-balancer-sticky'));
  writeFileSync(
    join(app, 'capibara-balancer-sticky/package.json'),
    JSON.stringify({
      name: 'capibara-balancer-sticky',
      version: '1.0.0',
      type: 'module',
      exports: './index.js',
      peerDependencies: { 'capibara-mcp': '^0.1.0' },
    }),
  );
  writeFileSync(join(app, 'capibara-balancer-sticky/index.ts'), PLUGIN);
  writeFileSync(join(app, 'sticky.test.ts'), CONFORMANCE);
  writeFileSync(join(app, 'type-checks.ts'), TYPE_CHECKS);
  writeFileSync(join(app, 'tsconfig.json'), JSON.stringify(TSCONFIG));
  writeFileSync(join(app, 'vitest.config.js'), "export default { test: { include: ['*.test.js'] } };\n");
  typecheck = await run(process.execPath, [TSC, '-p', app], app);
}, 240_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('npm pack → install → a plugin against the SDK', () => {
  it('ships the build with declarations, the plugin packages, migrations, the demo model and the schema; no sources, tests or benchmarks', () => {
    const files = packed.files.map((f) => f.path);
    for (const entry of ['index', 'sdk/index', 'testing/index']) {
      expect(files).toContain(`dist/src/${entry}.js`);
      expect(files).toContain(`dist/src/${entry}.d.ts`);
    }
    for (const plugin of ['backend-tfjs', 'backend-openai', 'balancer-p2c-ewma', 'auth-api-key']) {
      expect(files).toEqual(
        expect.arrayContaining([`dist/plugins/${plugin}/package.json`, `dist/plugins/${plugin}/index.js`, `dist/plugins/${plugin}/index.d.ts`]),
      );
    }
    expect(files).toEqual(
      expect.arrayContaining([
        'package.json',
        'README.md',
        'bin/capibara-mcp.js',
        'schema.graphql',
        'drizzle/0000_init.sql',
        'drizzle/meta/_journal.json',
        'models/capibara-mini/model.json',
        'models/capibara-mini/weights.bin',
        'models/capibara-mini/tokenizer.json',
      ]),
    );
    expect(files.filter((f) => /\.test\.|^(src|test|bench|scripts|examples)\/|\.map$|(?<!\.d)\.ts$/.test(f))).toEqual([]);
    expect(packed.size).toBeLessThan(2 * 1024 * 1024);
  });

  it('type-checks the plugin against the shipped declarations', () => {
    expect(typecheck.out).toBe('');
    expect(typecheck.code).toBe(0);
    expect(existsSync(join(app, 'capibara-balancer-sticky/index.js'))).toBe(true);
  });

  it("passes capibara-mcp/testing's balancer suite in the project's own vitest run", async () => {
    const report = join(work, 'conformance.json');
    const r = await run(process.execPath, [VITEST, 'run', '--reporter=json', `--outputFile=${report}`], app);
    expect(r.code, r.out).toBe(0);
    const json = JSON.parse(readFileSync(report, 'utf8')) as {
      numPassedTests: number;
      numFailedTests: number;
      testResults: Array<{ assertionResults: Array<{ ancestorTitles: string[] }> }>;
    };
    expect(json.numFailedTests).toBe(0);
    expect(json.numPassedTests).toBeGreaterThanOrEqual(8);
    expect(json.testResults[0]!.assertionResults[0]!.ancestorTitles).toEqual(['balancer conformance: sticky']);
  });

  it('routes requests with it when the installed `capibara-mcp start` loads it from a config file', async () => {
    const upstream: FakeOpenAIServer = await startFakeOpenAI({ tokens: ['hi'] });
    let child: ChildProcess | undefined;
    try {
      const instance = (id: string) => ({ id, backend: 'openai', endpoint: upstream.url, options: { model: 'fake-model' } });
      writeFileSync(
        join(app, 'capibara.json'),
        JSON.stringify({
          server: { port: 0, host: '127.0.0.1' },
          storage: { inMemory: true },
          demo: { enabled: false },
          log: { level: 'info' },
          defaultPlugins: false,
          auth: { enabled: false },
          plugins: [{ use: 'openai' }, { use: './capibara-balancer-sticky', options: { seed: 7 } }],
          router: { balancer: 'sticky' },
          models: [{ id: 'm', task: 'generate', versions: [{ version: 'v1', instances: ['a', 'b', 'c', 'd'].map(instance) }] }],
        }),
      );
      const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VITEST') && k !== 'NODE_OPTIONS'));
      const started = spawn(process.execPath, [join(app, 'node_modules/capibara-mcp/bin/capibara-mcp.js'), 'start', '--config', 'capibara.json'], {
        cwd: app,
        env: { ...env, DATABASE_URL: '', PORT: '' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child = started;
      let out = '';
      started.stdout.on('data', (d: Buffer) => {
        out += d.toString();
      });
      started.stderr.on('data', (d: Buffer) => {
        out += d.toString();
      });
      const url = await new Promise<string>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no ready line:\n${out}`)), 30_000);
        started.once('exit', (code) => {
          clearTimeout(t);
          reject(new Error(`exited with ${code}:\n${out}`));
        });
        started.stdout.on('data', () => {
          const m = /"url":"(http:[^"]+)".*"msg":"gateway ready"/.exec(out);
          if (m) {
            clearTimeout(t);
            resolve(m[1]!);
          }
        });
      });
      expect(out).toMatch(/"plugins":2,/);
      const infer = async (key: string) => {
        const r = await fetch(`${url}/api/v1/models/m/inference`, {
          method: 'POST',
          body: JSON.stringify({ input: 'hello' }),
          headers: { 'content-type': 'application/json', 'x-mcp-explain': '1', 'x-mcp-affinity-key': key },
        });
        expect(r.status).toBe(200);
        return (await r.json()) as { result: unknown; routing: { balancer: string; chosen: string } };
      };
      const homes = new Map<string, string>();
      for (const key of ['alice', 'bob', 'carol', 'dave', 'erin', 'frank']) {
        const first = await infer(key);
        expect(first.routing.balancer).toBe('sticky');
        expect(first.result).toBe('hi');
        homes.set(key, first.routing.chosen);
        expect((await infer(key)).routing.chosen).toBe(first.routing.chosen);
      }
      expect(new Set(homes.values()).size).toBeGreaterThan(1);
      const code = await new Promise<number | null>((resolve) => {
        started.removeAllListeners('exit');
        started.once('exit', (c) => resolve(c));
        started.kill('SIGTERM');
      });
      child = undefined;
      expect(code).toBe(0);
    } finally {
      child?.kill('SIGKILL');
      await upstream.close();
    }
  });
});
