/**
 * The placement reconciler runs on one gateway replica at a time: two replicas on one PostgreSQL
 * database, one holds the `placement-reconciler` lease; when it stops, the other takes over.
 */
import { describe, expect, it } from 'vitest';
import { createTestDatabase, startTestGateway } from '../../src/testing/gateway.ts';
import { waitFor } from '../workers/support.ts';

describe.skipIf(!process.env.DATABASE_URL)('placement reconciler across replicas', () => {
  it('runs on one replica at a time and moves to the other when the leader stops', async () => {
    const db = await createTestDatabase();
    const placement = { intervalMs: 100 };
    const a = await startTestGateway({ storage: { url: db.url }, placement });
    const b = await startTestGateway({ storage: { url: db.url }, placement });
    try {
      const leaders = () => [a, b].filter((g) => g.services.placement.isLeader).length;
      await waitFor(async () => leaders() === 1, 10_000, 'a leader', 20);
      for (let i = 0; i < 10; i++) {
        await Promise.all([a.services.placement.kick(), b.services.placement.kick()]);
        expect(leaders()).toBe(1);
      }
      const [leader, other] = a.services.placement.isLeader ? [a, b] : [b, a];
      await leader.services.placement.close(); // gives the lease up
      await waitFor(async () => other.services.placement.isLeader, 10_000, 'the other replica to take over', 20);
      expect(leader.services.placement.isLeader).toBe(false);
    } finally {
      await a.close();
      await b.close();
      await db.drop();
    }
  }, 60_000);
});
