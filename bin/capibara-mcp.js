#!/usr/bin/env node
// Runs the compiled CLI when built (dist/, made by `npm run build` and on install from a git checkout),
// otherwise the TypeScript sources through tsx, with the export condition under which capibara-mcp
// and its plugins resolve to their sources (package.json "capibara-source").
import { existsSync } from 'node:fs';
import { register } from 'node:module';

const compiled = new URL('../dist/src/main.js', import.meta.url);
if (existsSync(compiled)) {
  await import(compiled.href);
} else {
  const tsx = await import('tsx/esm/api');
  tsx.register();
  const addCondition =
    'export async function resolve(specifier, context, next) {' +
    ' return next(specifier, { ...context, conditions: [...context.conditions, "capibara-source"] }); }';
  register(`data:text/javascript,${encodeURIComponent(addCondition)}`);
  await import(new URL('../src/main.ts', import.meta.url).href);
}
