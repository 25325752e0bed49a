import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '../..');

describe('running from the TypeScript sources', () => {
  it('refuses to load plugins when capibara-mcp would resolve to a second, compiled copy (Node without the source condition)', () => {
    const cwd = mkdtempSync(join(tmpdir(), 'mcp-nocond-'));
    const r = spawnSync(join(ROOT, 'node_modules/.bin/tsx'), [join(ROOT, 'src/main.ts'), 'start'], {
      cwd,
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, PORT: '0', DATABASE_URL: '', MCP_DEMO__ENABLED: 'false', MCP_STORAGE__IN_MEMORY: 'true', NODE_OPTIONS: '' },
    });
    rmSync(cwd, { recursive: true, force: true });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(
      `MCP_PLUGIN_INVALID: capibara-mcp runs from ${join(ROOT, 'src/index.ts')} but its name resolves to file://${join(ROOT, 'dist/src/index.js')}`,
    );
    expect(r.stderr).toContain('start Node with --conditions=capibara-source');
  });
});
