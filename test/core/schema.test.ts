import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/errors.ts';
import { printSchemaSdl } from '../../src/graphql/schema.ts';

const ROOT = join(import.meta.dirname, '../..');

describe('generated and documented artefacts', () => {
  it('schema.graphql is the schema printed from the code (run `npm run schema:print` when this fails)', () => {
    expect(readFileSync(join(ROOT, 'schema.graphql'), 'utf8')).toBe(printSchemaSdl());
  });

  it('the README lists every error code with its HTTP status, and no other', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const rows = [...readme.matchAll(/^\| `(MCP_[A-Z_]+)` \| (\d{3}) \|/gm)].map((m) => [m[1], Number(m[2])]);
    expect(Object.fromEntries(rows)).toEqual(Object.fromEntries(Object.entries(ERROR_CODES).map(([code, v]) => [code, v.status])));
  });
});
