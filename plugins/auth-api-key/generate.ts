/**
 * Prints a new API key and the config entry that accepts it:
 *   npx tsx --conditions=capibara-source plugins/auth-api-key/generate.ts <id> [role ...]
 * The key is shown once; only its SHA-256 goes into the config.
 */
import { generateApiKey } from 'capibara-mcp/sdk';

const [id = 'my-key', ...roles] = process.argv.slice(2);
const { key, sha256 } = generateApiKey();
process.stdout.write(
  `key (shown once): ${key}\n\nconfig:\nplugins:\n  - use: api-key\n    options:\n      keys:\n` +
    `        - { id: ${JSON.stringify(id)}, sha256: "${sha256}", roles: ${JSON.stringify(roles)} }\n`,
);
