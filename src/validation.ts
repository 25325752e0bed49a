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

/** Longest id (model, version, instance, worker, inference) any entry point accepts. */
export const MAX_ID_LENGTH = 256;

/** C0 and C1 control characters, DEL, and lone surrogates (not storable as UTF-8 text). */
// eslint-disable-next-line no-control-regex
const UNSAFE_ID_CHARS = /[\u0000-\u001f\u007f-\u009f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Why an id is refused (empty, too long, a control character), or undefined when it is acceptable. */
export function idProblem(value: string): string | undefined {
  if (value.length === 0) return 'must not be empty';
  if (value.length > MAX_ID_LENGTH) return `at most ${MAX_ID_LENGTH} characters`;
  if (UNSAFE_ID_CHARS.test(value)) return 'must not contain control characters';
  return undefined;
}

/**
 * The one check every entry point applies to an id it receives (path parameters, OpenAI `model`,
 * GraphQL ID arguments, inference model and version): a refusal is MCP_VALIDATION_FAILED naming `path`.
 */
export function checkId(value: string, path: string): string {
  const problem = idProblem(value);
  if (problem) throw new McpError('MCP_VALIDATION_FAILED', `${path}: ${problem}`, { details: { path } });
  return value;
}
