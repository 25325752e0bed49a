import { describe, expect, it } from 'vitest';
import { runOutage } from './outage-scenario.ts';

/** Outage length: short here; bench/audit-outage.ts runs the 20 s (AUDIT_OUTAGE_MS overrides both). */
const OUTAGE_MS = Number(process.env.AUDIT_OUTAGE_MS ?? 4000);

// The gateway reaches a throwaway PostgreSQL database through a TCP fault proxy; the shared server is never stopped.
describe.runIf(process.env.DATABASE_URL)('a database outage under inference load', () => {
  it.each(['buffered', 'durable'] as const)(
    'audit.inference %s: every acknowledged inference has its record and audit row once the database is back',
    async (mode) => {
      const r = await runOutage({ mode, outageMs: OUTAGE_MS, concurrency: 6 });
      console.info(`outage ${OUTAGE_MS} ms, audit.inference ${mode}: ${JSON.stringify(r)}`);
      expect(r.failedWrites).toBeGreaterThan(0); // the outage did happen to the writer
      expect(r.refused).toBe(0); // the buffer bound was never reached
      expect(r.refusedByStatus).toEqual({}); // every request was answered 200: none refused, none hung
      expect(r.acknowledged).toBeGreaterThan(20);
      if (mode === 'buffered') expect(r.acknowledgedDuringOutage).toBeGreaterThan(0); // answers went on during the outage
      expect({ missingRecords: r.missingRecords, missingAuditRows: r.missingAuditRows, chainOk: r.chainOk }).toEqual({
        missingRecords: 0,
        missingAuditRows: 0,
        chainOk: true,
      });
    },
    120_000,
  );
});
