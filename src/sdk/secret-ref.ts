/**
 * Secret references in plugin options: `env:NAME` (an environment variable) or `file:PATH` (a file,
 * trailing newline dropped), so the config file holds no secret. Anything else is taken literally
 * (allowed, but the plugin should warn: a config file is easily shared or committed).
 */
import { readFileSync, statSync } from 'node:fs';
import { z } from 'zod';
import { McpError } from '../errors.ts';

const MAX_SECRET_FILE_BYTES = 64 * 1024;

/** A secret option: `env:NAME`, `file:PATH` or (discouraged) the literal secret. */
export const secretReference = z.string().min(1).max(MAX_SECRET_FILE_BYTES);

export interface ResolvedSecret {
  value: string;
  /** The option held the secret itself rather than a reference. */
  literal: boolean;
}

/** Resolves a secret reference at setup time; a missing variable or unreadable file is MCP_CONFIG_INVALID (the message names it, never the value). */
export function resolveSecret(ref: string, env: NodeJS.ProcessEnv = process.env): ResolvedSecret {
  if (ref.startsWith('env:')) {
    const name = ref.slice(4);
    const value = env[name];
    if (!value) throw new McpError('MCP_CONFIG_INVALID', `secret reference env:${name}: the environment variable is not set`);
    return { value, literal: false };
  }
  if (ref.startsWith('file:')) {
    const path = ref.slice(5);
    let value: string;
    try {
      if (statSync(path).size > MAX_SECRET_FILE_BYTES) throw new Error(`larger than ${MAX_SECRET_FILE_BYTES} bytes`);
      value = readFileSync(path, 'utf8').replace(/\r?\n$/, '');
    } catch (err) {
      throw new McpError('MCP_CONFIG_INVALID', `secret reference file:${path}: ${(err as Error).message}`);
    }
    if (!value) throw new McpError('MCP_CONFIG_INVALID', `secret reference file:${path}: the file is empty`);
    return { value, literal: false };
  }
  return { value: ref, literal: true };
}
