import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from './config/loader.ts';
import { configJsonSchema } from './config/schema.ts';
import { isMcpError, McpError } from './errors.ts';
import { createLogger } from './logging.ts';
import { applyNodeTuning } from './node-tuning.ts';
import { PACKAGE_ROOT } from './package-root.ts';
import { CLI_OPTIONS, packageVersion, USAGE, usageOf } from './cli-usage.ts';

const SCHEMA_FILE = join(PACKAGE_ROOT, 'schema.graphql');

function portNumber(raw: string): number {
  const p = Number(raw);
  if (raw === '' || !Number.isInteger(p) || p < 0 || p > 65535) throw new McpError('MCP_CONFIG_INVALID', `--port: not a port number: ${raw}`);
  return p;
}

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, options: CLI_OPTIONS });
  } catch (err) {
    // An unknown or malformed option: say so and how to get help, no stack trace.
    process.stderr.write(`capibara-mcp: ${(err as Error).message.split('. ')[0]}\nRun \`capibara-mcp --help\` for the commands and their options.\n`);
    return 2;
  }
  const { values } = parsed;
  let positionals = parsed.positionals;
  if (values.version) {
    process.stdout.write(`capibara-mcp ${packageVersion()} (node ${process.version})\n`);
    return 0;
  }
  if (positionals[0] === 'help') {
    positionals = positionals.slice(1);
    values.help = true;
  }
  const [cmd, sub] = positionals;
  if (values.help || !cmd) {
    const usage = usageOf(cmd);
    if (!usage) {
      process.stderr.write(`unknown command: ${cmd}\n\n${USAGE}`);
      return 2;
    }
    (cmd || values.help ? process.stdout : process.stderr).write(usage);
    return values.help ? 0 : 2;
  }
  // --gateway is the worker's; --port the worker's and start's: elsewhere they would be ignored silently.
  const misplaced = (['gateway', 'port'] as const).find((o) => values[o] !== undefined && !(cmd === 'worker' || (o === 'port' && cmd === 'start')));
  if (misplaced) {
    process.stderr.write(`capibara-mcp: --${misplaced} is not an option of \`${cmd}\` (see \`capibara-mcp ${cmd} --help\`)\n`);
    return 2;
  }
  switch (`${cmd}${sub ? ` ${sub}` : ''}`) {
    case 'start': {
      const loaded = loadConfig({ file: values.config, overrides: values.port === undefined ? {} : { 'server.port': portNumber(values.port) } });
      const tuning = applyNodeTuning(loaded.config.node);
      // Loaded here: help, version and the other commands start without the gateway's modules.
      const { createGateway } = await import('./gateway.ts');
      const gateway = await createGateway({ config: loaded.config, baseDir: loaded.baseDir });
      const logger = gateway.services.logger;
      if (tuning.length) logger.debug({ flags: tuning }, 'V8 flags applied');
      let stopping = false;
      await new Promise<void>((resolve) => {
        const stop = (signal: string) => {
          if (stopping) {
            logger.warn({ signal }, 'second signal: exiting now');
            process.exit(1);
          }
          stopping = true;
          logger.info({ signal, graceMs: loaded.config.server.shutdownGraceMs }, 'shutting down');
          gateway.close().then(resolve, (err) => {
            logger.error({ err }, 'shutdown failed');
            resolve();
          });
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      });
      logger.info('stopped');
      return 0;
    }
    case 'worker': {
      const { runWorker } = await import('./workers/worker-main.ts');
      return runWorker({ configFile: values.config, gateway: values.gateway, port: values.port });
    }
    case 'migrate': {
      const { config, baseDir } = loadConfig({ file: values.config });
      const { openDatabase } = await import('./db/client.ts');
      const db = await openDatabase({
        url: config.storage.url,
        dataDir: resolve(baseDir, config.storage.dataDir),
        inMemory: config.storage.inMemory,
        log: createLogger(config.log.level),
      });
      await db.migrate();
      await db.close();
      process.stdout.write(`migrations applied (${db.kind})\n`);
      return 0;
    }
    case 'config check': {
      // What `start` checks before it opens storage or listens (src/start-check.ts), and nothing more.
      const { config, file, baseDir } = loadConfig({ file: values.config });
      const { checkStartConfig } = await import('./start-check.ts');
      const { plugins, secretKey } = await checkStartConfig(config, { baseDir, logger: createLogger('warn') });
      process.stdout.write(`configuration ok${file ? ` (${file})` : ' (defaults)'}: ${plugins.length} plugins (${plugins.map((p) => p.name).join(', ')})\n`);
      // Where the secret key comes from, never the key.
      process.stdout.write(`secret key: ${secretKey.describe()}\n`);
      return 0;
    }
    case 'config schema':
      process.stdout.write(`${JSON.stringify(configJsonSchema(), null, 2)}\n`);
      return 0;
    case 'schema print': {
      const { printSchemaSdl } = await import('./graphql/schema.ts');
      process.stdout.write(printSchemaSdl());
      return 0;
    }
    case 'schema check': {
      const { printSchemaSdl } = await import('./graphql/schema.ts');
      let committed = '';
      try {
        committed = readFileSync(SCHEMA_FILE, 'utf8');
      } catch {
        /* missing counts as stale */
      }
      if (committed !== printSchemaSdl()) {
        process.stderr.write('schema.graphql is stale: run `npm run schema:print`\n');
        return 1;
      }
      process.stdout.write('schema.graphql is up to date\n');
      return 0;
    }
    default:
      process.stderr.write(`unknown command: ${positionals.join(' ')}\n\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    const logger = createLogger('info');
    if (isMcpError(err)) {
      logger.fatal({ code: err.code, details: err.details }, err.message);
      process.stderr.write(`${err.code}: ${err.message}\n`);
    } else {
      logger.fatal({ err }, 'fatal error');
    }
    process.exit(1);
  },
);
