/**
 * A migration waits for table locks: an ALTER TABLE needs its table to itself, and another session
 * may hold it for minutes (a pg_dump for a backup holds every table it reads). While the ALTER
 * waited, every replica's statements on that table queued behind it, and the fleet stalled with
 * no word. Now a start that must migrate gives up after GATEWAY_MIGRATION_LOCK_WAIT_S (10 s; 2 s
 * here), changes nothing and says why; the other sessions go on meanwhile, and the next start,
 * once the table is free, migrates.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { SQL } from "bun";
import { startPostgres, type PostgresHandle } from "../../test/harness/postgres.ts";
import { MIGRATIONS, MIGRATIONS_TABLE, splitStatements } from "./_migrations.ts";
import { MigrationBlockedError, PostgresStore } from "./postgres.ts";

const AT = "2026-12-01T00:00:00.000Z";
let pg: PostgresHandle;
beforeAll(async () => {
  pg = await startPostgres();
}, 60_000);
afterAll(async () => {
  await pg?.stop();
});

test("a start that must migrate while a pg_dump-like session holds a table it alters gives up, changing nothing, and others go on; once free, it migrates", async () => {
  process.env.GATEWAY_MIGRATION_LOCK_WAIT_S = "2";
  const url = await pg.createDatabase(`mlock_${process.pid}`);
  const old = new SQL({ url, max: 1 });
  // A database of a gateway before migration 40 (ALTER TABLE devices ADD COLUMN).
  await old.unsafe(MIGRATIONS_TABLE);
  for (const m of MIGRATIONS.filter((m) => m.version < 40)) {
    for (const stmt of splitStatements(m.postgres)) await old.unsafe(stmt);
    await old.unsafe("INSERT INTO schema_migrations (version, description, applied_at) VALUES ($1, $2, $3)", [m.version, m.description, AT]);
  }
  await old.close();
  // As pg_dump does: a transaction that has read the table holds ACCESS SHARE on it until it ends.
  const dump = new SQL({ url, max: 1 });
  const release = Promise.withResolvers<void>();
  const reading = Promise.withResolvers<void>();
  const dumping = dump.begin(async (tx) => {
    await tx.unsafe("SELECT count(*) FROM devices");
    reading.resolve();
    await release.promise;
  });
  await reading.promise;
  const other = new SQL({ url, max: 1 });
  try {
    const t0 = performance.now();
    const err = await PostgresStore.connect(url, { max: 2 }).then(
      (s) => s.close().then(() => undefined),
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(MigrationBlockedError);
    expect((err as Error).message).toContain("a table they change was held by another session for more than 2 s (a pg_dump for a backup, a long query): nothing was changed");
    expect(performance.now() - t0).toBeLessThan(10_000);
    // Nothing was changed, and a replica's reads of the table were not kept waiting behind it.
    const applied = (await other.unsafe("SELECT max(version) AS v FROM schema_migrations")) as { v: number }[];
    expect(Number(applied[0]!.v)).toBeLessThan(40);
    const t1 = performance.now();
    await other.unsafe("SELECT count(*) FROM devices");
    expect(performance.now() - t1).toBeLessThan(1000);
  } finally {
    release.resolve();
    await dumping;
    await dump.close();
  }
  delete process.env.GATEWAY_MIGRATION_LOCK_WAIT_S;
  // The table free, the next start migrates.
  const s = await PostgresStore.connect(url, { max: 2 });
  expect(s.migrated).toBeDefined();
  await s.close();
  const now = (await other.unsafe("SELECT max(version) AS v FROM schema_migrations")) as { v: number }[];
  expect(Number(now[0]!.v)).toBe(Math.max(...MIGRATIONS.map((m) => m.version)));
  await other.close();
}, 60_000);
