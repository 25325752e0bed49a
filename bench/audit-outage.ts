/**
 * The audit scenario at full length: a 20 s database outage under inference load (the
 * gateway reaches a throwaway PostgreSQL database through a TCP fault proxy that resets every
 * connection and refuses new ones, like `pg_ctlcluster … stop -m immediate`), in both
 * `audit.inference` modes that record. Prints, per mode, what was acknowledged and what is missing.
 *
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
 *     npx tsx --conditions=capibara-source bench/audit-outage.ts [--outage-ms 20000] [--concurrency 8]
 */
import { parseArgs } from 'node:util';
import { runOutage } from '../test/audit/outage-scenario.ts';

const { values: args } = parseArgs({
  options: {
    'outage-ms': { type: 'string', default: '20000' },
    concurrency: { type: 'string', default: '8' },
  },
});

const rows = [];
// The same load without an outage first (requests/s per mode), then with it.
for (const mode of ['off', 'buffered', 'durable'] as const) {
  const r = await runOutage({ mode, outageMs: 0, concurrency: Number(args.concurrency), beforeMs: 5000, afterMs: 0 });
  console.log(
    `no outage, audit.inference ${mode}: ${(r.acknowledged / 5).toFixed(0)} requests/s acknowledged, missing ${r.missingRecords + r.missingAuditRows}`,
  );
}
for (const mode of ['buffered', 'durable'] as const) {
  const r = await runOutage({ mode, outageMs: Number(args['outage-ms']), concurrency: Number(args.concurrency), beforeMs: 2000, afterMs: 5000 });
  rows.push(r);
  console.log(JSON.stringify(r));
}
console.log(
  '\n| audit.inference | outage | acknowledged | acked during outage | missing records | missing audit rows | failed writes | refused | max buffered | chain |',
);
console.log('|---|---|---|---|---|---|---|---|---|---|');
for (const r of rows) {
  console.log(
    `| ${r.mode} | ${r.outageMs / 1000} s | ${r.acknowledged} | ${r.acknowledgedDuringOutage} | ${r.missingRecords} | ${r.missingAuditRows} | ` +
      `${r.failedWrites} | ${r.refused} | ${r.maxBufferedSeen} | ${r.chainOk ? 'ok' : 'BROKEN'} |`,
  );
}
