/**
 * `alert-log`: writes each alert state change as one structured line, to the gateway's log (pino,
 * the plugin's logger: `msg: "alert firing"` / `"alert resolved"` with the alert as `alert`) or,
 * with `file`, appended to an NDJSON file (one JSON object per line). A file that cannot be written
 * makes the delivery fail, so the gateway retries and dead-letters it like any other sink.
 */
import { appendFile } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { definePlugin, McpError, type AlertSink, type PluginContext } from 'capibara-mcp';
import { alertToJson } from 'capibara-mcp/sdk';

export const optionsSchema = z.strictObject({
  /** Log level of firing alerts (resolutions are logged at `info`). */
  level: z.enum(['info', 'warn', 'error', 'fatal']).default('warn'),
  /** Append to this NDJSON file instead of the log (relative paths resolve against the data folder). */
  file: z.string().min(1).optional(),
});
export type LogSinkOptions = z.input<typeof optionsSchema>;

export function createLogSink(ctx: Pick<PluginContext, 'logger' | 'dataDir'>, input: z.output<typeof optionsSchema>): AlertSink {
  const file = input.file === undefined ? undefined : isAbsolute(input.file) ? input.file : resolve(ctx.dataDir, input.file);
  return {
    async send(alert, signal) {
      if (signal.aborted) throw new McpError('MCP_CANCELLED', 'alert log failed: aborted', { retryable: true });
      const json = alertToJson(alert);
      if (file === undefined) {
        ctx.logger[alert.state === 'resolved' ? 'info' : input.level]({ alert: json }, `alert ${alert.state}`);
        return;
      }
      try {
        await appendFile(file, `${JSON.stringify({ at: new Date().toISOString(), ...json })}\n`, 'utf8');
      } catch (err) {
        throw new McpError('MCP_INTERNAL', `alert log failed: cannot append to the file (${(err as NodeJS.ErrnoException).code ?? 'error'})`, {
          retryable: true,
        });
      }
    },
  };
}

export default definePlugin({
  name: 'alert-log',
  kind: 'alertSink',
  apiVersion: '^1.0.0',
  description: 'Writes alerts to the gateway log or an NDJSON file.',
  options: optionsSchema,
  setup: (ctx, options) => createLogSink(ctx, options),
});
