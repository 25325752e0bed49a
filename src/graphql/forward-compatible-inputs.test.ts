import { envelop, useEngine, useSchema } from '@envelop/core';
import { buildSchema, execute, parse, validate, type ExecutionResult } from 'graphql';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { useForwardCompatibleInputs } from './forward-compatible-inputs.ts';

const schema = buildSchema(`
  input Entry { id: String! size: Int }
  input Load { count: Int entries: [Entry!] strict: Strict }
  input Strict { a: Int }
  type Query { beat(load: Load, strict: Strict): String }
`);
// marked as the worker inputs are (Pothos sets `extensions` from the type's options)
for (const name of ['Load', 'Entry']) Object.assign(schema.getType(name)!, { extensions: { unknownFieldsIgnored: true } });
schema.getQueryType()!.getFields().beat!.resolve = (_r, args) => JSON.stringify(args);

async function run(query: string, variableValues: Record<string, unknown>, logger = pino({ level: 'silent' })): Promise<ExecutionResult> {
  const getEnveloped = envelop({ plugins: [useEngine({ parse, validate, execute }), useSchema(schema), useForwardCompatibleInputs()] });
  const { execute: run, schema: s } = getEnveloped();
  return (await run({ schema: s, document: parse(query), variableValues, contextValue: { logger } })) as ExecutionResult;
}

describe('forward-compatible inputs', () => {
  it('drops unknown keys of marked types at every depth (a lone entry for a list too), and logs their names at debug', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'debug' }, { write: (l: string) => void lines.push(l) });
    const r = await run(
      `query($l: Load) { beat(load: $l) }`,
      { l: { count: 1, future: { deep: [1, 2] }, entries: [{ id: 'a', size: 2, newer: true }], strict: { a: 1 } } },
      logger,
    );
    expect(r.errors).toBeUndefined();
    expect(JSON.parse(r.data!.beat as string)).toEqual({ load: { count: 1, entries: [{ id: 'a', size: 2 }], strict: { a: 1 } } });
    expect(JSON.parse(lines.join('')).ignoredFields).toEqual(['Load.future', 'Entry.newer']);
    const lone = await run(`query($l: Load) { beat(load: $l) }`, { l: { entries: { id: 'b', x: 1 } } });
    expect(JSON.parse(lone.data!.beat as string)).toEqual({ load: { entries: [{ id: 'b' }] } });
  });

  it('unmarked types stay strict, inside a marked one too; known fields are still coerced', async () => {
    expect((await run(`query($l: Load) { beat(load: $l) }`, { l: { strict: { a: 1, b: 2 } } })).errors?.[0]?.message).toMatch(/"b" is not defined/);
    expect((await run(`query($s: Strict) { beat(strict: $s) }`, { s: { a: 1, b: 2 } })).errors?.[0]?.message).toMatch(/"b" is not defined/);
    expect((await run(`query($l: Load) { beat(load: $l) }`, { l: { count: 'x', y: 1 } })).errors?.[0]?.message).toMatch(/Int cannot represent/);
    expect((await run(`query($l: Load) { beat(load: $l) }`, { l: { entries: [{ size: 1, z: 1 }] } })).errors?.[0]?.message).toMatch(/"id" of required type/);
  });
});
