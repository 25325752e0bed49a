import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLocalEventBus } from '../events/bus.ts';
import { openDatabase, type Database } from './client.ts';
import { ReplicaPresence } from './replica-presence.ts';

const until = async (cond: () => boolean, ms: number) => {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
  return cond();
};

// Replicas on one database (the embedded one here: the same statements as on PostgreSQL, one process).
describe('ReplicaPresence', () => {
  let dir: string;
  let database: Database;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mcp-presence-'));
    database = await openDatabase({ dataDir: dir, inMemory: true });
    await database.migrate();
  });
  afterAll(async () => {
    await database?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('replicas see each other ranked by id; one that stops is gone at once (bus), one that dies once its row expires', async () => {
    const events = createLocalEventBus();
    const opts = { beatMs: 50, expiryMs: 400, events };
    const a = new ReplicaPresence(database.db, { ...opts, id: 'a' });
    const b = new ReplicaPresence(database.db, { ...opts, id: 'b' });
    const seen: string[][] = [];
    a.onChange((live) => seen.push([...live]));
    await a.start();
    await b.start();
    expect(await until(() => a.live.length === 2, 2000)).toBe(true);
    expect([a.live, a.rank, b.rank]).toEqual([['a', 'b'], 0, 1]);

    await b.close();
    expect(await until(() => a.live.length === 1, 1000)).toBe(true);
    expect(seen).toEqual([['a', 'b'], ['a']]);

    // A replica that died: its row stays until it expires.
    await database.db.execute(
      sql`insert into alert_leases (name, holder, epoch, expires_at) values ('gateway-replica:0-dead', '0-dead', 1, now() + interval '300 milliseconds')`,
    );
    await a.beat();
    expect([a.live, a.rank]).toEqual([['0-dead', 'a'], 1]);
    expect(await until(() => a.live.length === 1, 3000)).toBe(true);
    await a.close();
    const rows = await database.db.execute(sql`select name from alert_leases where name like 'gateway-replica:%' and expires_at > now()`);
    expect((rows as { rows?: unknown[] }).rows ?? rows).toEqual([]);
  });
});
