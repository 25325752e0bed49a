#!/usr/bin/env node
// In a git checkout (src/ is there) runs the TypeScript sources through tsx, with the export
// condition under which capibara-mcp and its plugins resolve to their sources (package.json
// "capibara-source"), so an edited source never loses to a stale build. An installed package ships
// only the compiled dist/, and runs that.
import { existsSync } from 'node:fs';
import * as nodeModule from 'node:module';

const sources = new URL('../src/main.ts', import.meta.url);
if (existsSync(sources)) {
  const tsx = await import('tsx/esm/api');
  tsx.register();
  addSourceCondition();
  await import(sources.href);
} else {
  await import(new URL('../dist/src/main.js', import.meta.url).href);
}

/**
 * Adds the "capibara-source" condition to every resolution. Where Node has in-thread hooks
 * (module.registerHooks: Node 22.15+, 23.5+), tsx uses them too and no hooks thread is started:
 * a hooks thread next to in-thread hooks can keep a short command (`config check`) from exiting
 * after it has answered. Node 20 has only module.register, which tsx also uses there.
 */
function addSourceCondition() {
  const withCondition = (context) => ({ ...context, conditions: [...context.conditions, 'capibara-source'] });
  if (typeof nodeModule.registerHooks === 'function') {
    nodeModule.registerHooks({ resolve: (specifier, context, next) => next(specifier, withCondition(context)) });
    return;
  }
  const hook =
    'export async function resolve(specifier, context, next) {' +
    ' return next(specifier, { ...context, conditions: [...context.conditions, "capibara-source"] }); }';
  nodeModule.register(`data:text/javascript,${encodeURIComponent(hook)}`);
}
