/**
 * One gateway replica for the alert leader test: `createGateway` with the config file in argv[2]
 * and a metric source whose `latency_p95_ms{model="chat"}` is 900 ms at all times (the metrics
 * history is not part of this process). Prints `replica ready <url>` once listening.
 */
import { createGateway } from '../../src/gateway.ts';
import { loadConfig } from '../../src/config/loader.ts';
import { createLogger } from '../../src/logging.ts';
import { FunctionMetricSource } from './metric-sources.ts';

const { config, baseDir } = loadConfig({ file: process.argv[2]!, env: process.env });
const source = new FunctionMetricSource([{ metric: 'latency_p95_ms', labels: { model: 'chat' }, value: () => 900 }]);
source.start(200);
const gateway = await createGateway({ config, baseDir, logger: createLogger('info'), metricSource: source });
process.stdout.write(`replica ready ${gateway.url}\n`);
