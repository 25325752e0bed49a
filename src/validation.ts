import type { z } from 'zod';
import { McpError } from './errors.ts';

/**
 * Parses input against a zod schema; a refusal is MCP_VALIDATION_FAILED naming the first bad path
 * (`<prefix>.<path>`), with every issue in details.issues.
 */
export function parseInput<T extends z.ZodType>(schema: T, input: unknown, prefix = 'input'): z.infer<T> {
  const r = schema.safeParse(input);
  if (r.success) return r.data;
  const first = r.error.issues[0]!;
  const path = [prefix, ...first.path.map(String)].join('.');
  throw new McpError('MCP_VALIDATION_FAILED', `${path}: ${first.message}`, {
    details: { path, issues: r.error.issues.map((i) => ({ path: [prefix, ...i.path.map(String)].join('.'), message: i.message })) },
  });
}
