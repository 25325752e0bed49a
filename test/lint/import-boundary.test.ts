import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const eslint = new ESLint({ cwd: ROOT });

/** The boundary rules that fired on `code` as if it were the file at `path`. */
async function boundaryErrors(path: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: `${ROOT}${path}` });
  return result!.messages.filter((m) => m.ruleId === 'no-restricted-imports' || m.ruleId === 'no-restricted-syntax').map((m) => m.message);
}

describe('the SDK boundary (eslint.config.js)', () => {
  const internals = [
    "import { McpError } from '../../src/errors.ts';",
    "export { hash32 } from '../../src/sdk/hash.ts';",
    "import { testPluginContext } from '../../test/support/plugin-context.ts';",
    "import { UpstreamClient } from 'capibara-mcp/src/upstream/client.ts';",
    "import { McpError } from 'capibara-mcp/dist/src/errors.js';",
    "export const m = await import('../../src/random.ts');",
  ];
  const publicApi = [
    "import { definePlugin, McpError } from 'capibara-mcp';",
    "import { UpstreamClient } from 'capibara-mcp/sdk';",
    "import { describeBalancerConformance } from 'capibara-mcp/testing';",
    "import { own } from './own.ts';",
    "import { z } from 'zod';",
  ];

  it('fails a plugin or an example that reaches into the gateway sources', async () => {
    for (const path of ['plugins/backend-openai/index.ts', 'plugins/backend-tfjs/index.test.ts', 'examples/capibara-plugin-echo/index.js']) {
      for (const line of internals) {
        const code = path.endsWith('.js') ? line.replace(/\.ts'/g, ".js'") : line;
        expect(await boundaryErrors(path, `${code}\nexport {};\n`), `${path}: ${code}`).toEqual([
          expect.stringContaining('use the public entry points capibara-mcp, capibara-mcp/sdk and capibara-mcp/testing'),
        ]);
      }
    }
  });

  it('lets them use capibara-mcp, capibara-mcp/sdk, capibara-mcp/testing, their own files and npm packages', async () => {
    const code = `${publicApi.join('\n')}\nexport const all = [definePlugin, McpError, UpstreamClient, describeBalancerConformance, own, z];\n`;
    expect(await boundaryErrors('plugins/backend-openai/index.ts', code)).toEqual([]);
  });

  it('leaves the gateway and its tests free to import its sources', async () => {
    expect(await boundaryErrors('test/core/x.test.ts', `${internals[0]}\nexport const e = McpError;\n`)).toEqual([]);
  });
});
