/**
 * V8 settings the CLI applies to its own process (`capibara-mcp start` and `worker`). A host that
 * embeds the gateway (createGateway) keeps its own: these flags are process-wide.
 */
import v8 from 'node:v8';
import type { Config } from './config/schema.ts';

/** The V8 flags `config.node` asks for, minus those node was already started with (command line or NODE_OPTIONS). */
export function nodeTuningFlags(node: Config['node'], given: string[] = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)]): string[] {
  const flags: string[] = [];
  const has = (name: string) => given.some((a) => a.replaceAll('_', '-').startsWith(name));
  if (node.heapGrowingPercent > 0 && !has('--heap-growing-percent')) flags.push(`--heap-growing-percent=${node.heapGrowingPercent}`);
  return flags;
}

/** Applies them; V8 reads these at every full GC, so setting them after start-up takes effect. */
export function applyNodeTuning(node: Config['node']): string[] {
  const flags = nodeTuningFlags(node);
  for (const f of flags) v8.setFlagsFromString(f);
  return flags;
}
