#!/usr/bin/env node
// In a git checkout (src/ is there) runs the TypeScript sources through tsx, with the export
// condition under which capibara-mcp and its plugins resolve to their sources (package.json
// "capibara-source"), so an edited source never loses to a stale build. An installed package ships
// only the compiled dist/, and runs that.
import { existsSync } from 'node:fs';
import { register } from 'node:module';

const sources = new URL('../src/main.ts', import.meta.url);
if (existsSync(sources)) {
  const tsx = await import('tsx/esm/api');
  tsx.register();
  const addCondition =
    'export async function resolve(specifier, context, next) {' +
    ' return next(specifier, { ...context, conditions: [...context.conditions, "capibara-source"] }); }';
  register(`data:text/javascript,${encodeURIComponent(addCondition)}`);
  await import(sources.href);
} else {
  await import(new URL('../dist/src/main.js', import.meta.url).href);
}
