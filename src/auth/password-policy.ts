import { McpError } from '../errors.ts';

export const PASSWORD_MIN = 12;
export const PASSWORD_MAX = 1024;

/** The password policy: 12 to 1024 characters (long passphrases welcome; the bound keeps hashing cheap to refuse). */
export function checkPassword(password: string, path = 'password'): void {
  if (typeof password !== 'string' || password.length < PASSWORD_MIN || password.length > PASSWORD_MAX) {
    throw new McpError('MCP_VALIDATION_FAILED', `${path}: ${PASSWORD_MIN} to ${PASSWORD_MAX} characters`, { details: { path } });
  }
}
