/** The `capibara-mcp` command line: its options, the general help and each command's help. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PACKAGE_ROOT } from './package-root.ts';

export const CLI_OPTIONS = {
  config: { type: 'string', short: 'c' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
  gateway: { type: 'string' },
  port: { type: 'string' },
} as const;

export function packageVersion(): string {
  return (JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
}

const CONFIG_OPTION = `  -c, --config FILE   configuration file (default: $MCP_CONFIG, else capibara.yaml|yml|json in the
                      working folder, else built-in defaults); every key also settable as MCP_SECTION__KEY`;

export const USAGE = `Usage: capibara-mcp <command> [options]

Commands:
  start            start the gateway (embedded PGlite unless DATABASE_URL / storage.url)
  worker           start a worker that serves models for a gateway (--gateway URL)
  migrate          apply database migrations and exit
  config check     check the configuration as \`start\` would (plugins, their options, names), then exit
  config schema    print the configuration's JSON Schema
  schema print     print the GraphQL schema (SDL)
  schema check     fail when schema.graphql is stale
  help [command]   this help, or a command's

Options:
${CONFIG_OPTION}
  -h, --help          help (\`capibara-mcp <command> --help\` for a command's)
  -v, --version       print the version and exit
`;

const COMMAND_USAGE: Record<string, string> = {
  start: `Usage: capibara-mcp start [--config FILE] [--port N]

Starts the gateway. The first start on an empty data folder creates the embedded database
(storage.dataDir/pglite, ~10 s) and the admin user (its generated password is printed once).
Stops cleanly on SIGTERM / SIGINT.

Options:
${CONFIG_OPTION}
  --port N            port to listen on (server.port; default 8080, 0 = any free port)
`,
  worker: `Usage: capibara-mcp worker [--gateway URL] [--port N] [--config FILE]

Starts a worker that serves models for a gateway (README "Running a worker"). It needs a worker
API key: MCP_WORKER__TOKEN=mcp_sk_… (or worker.token in the config). Without worker.models it
serves the shipped demo model capibara-mini.

Options:
  --gateway URL       the gateway's base URL (worker.gateway; default http://127.0.0.1:8080)
  --port N            port of the worker's HTTP server (worker.port; default 8090, 0 = any free port)
${CONFIG_OPTION}
`,
  migrate: `Usage: capibara-mcp migrate [--config FILE]

Applies the database migrations (PGlite or PostgreSQL) and exits.

Options:
${CONFIG_OPTION}
`,
  config: `Usage: capibara-mcp config check|schema [--config FILE]

  config check     checks what \`start\` checks before it opens the database: the configuration
                   keys, the plugins (names, options, dependencies) and every name that refers to
                   a plugin (router.balancer, auth.strategies, limits.store, models' backends),
                   and the secret key (MCP_SECRET_KEY, MCP_SECRET_KEY_FILE or the data-dir key file).
                   Exit 0, "configuration ok" and where the secret key comes from (env, file,
                   data-dir file, memory or none; never the key), or exit 1 and the problems.
                   Opens no database and writes no file.
  config schema    prints the configuration's JSON Schema

Options:
${CONFIG_OPTION}
`,
  schema: `Usage: capibara-mcp schema print|check

  schema print     prints the GraphQL schema (SDL)
  schema check     fails when schema.graphql is stale
`,
};

/** The help for a command (the general one without a command); undefined for an unknown command. */
export function usageOf(command: string | undefined): string | undefined {
  if (!command) return USAGE;
  return COMMAND_USAGE[command];
}
