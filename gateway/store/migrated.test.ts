/**
 * An upgrade that migrates the database says so in the start log (the upgrade review found the
 * gateway silent): from which migration to which, and whether an older gateway can still use it.
 * A new database and one already up to date say nothing.
 */
import { expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { KNOWN_SCHEMA, migratedLine, MIGRATIONS, MIGRATIONS_TABLE, schemaNeeded } from "./_migrations.ts";
import { SqliteStore } from "./sqlite.ts";
import { openStore } from "./open.ts";

const AT = "2026-12-01T00:00:00.000Z";

/** A database as a gateway that knew migrations up to `last` left it. */
function databaseAt(last: number): Database {
  const db = new Database(":memory:", { strict: true });
  db.exec(MIGRATIONS_TABLE);
  for (const m of MIGRATIONS.filter((m) => m.version <= last)) {
    db.exec(m.sqlite);
    db.query("INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)").run(m.version, m.description, AT);
  }
  return db;
}

test("a database an older gateway made: the start says the schema moved, and when that gateway can no longer use it", async () => {
  const needed = Number(schemaNeeded(undefined));
  // Made by a gateway that does not know the last migration an older gateway needs: going back is lost.
  const s = new SqliteStore(databaseAt(needed - 1));
  try {
    const ran = MIGRATIONS.filter((m) => m.version >= needed).length;
    expect(s.migrated).toEqual({ from: needed - 1, to: KNOWN_SCHEMA, ran, olderGatewaysNeed: needed });
    expect(migratedLine(s.migrated)).toBe(
      `database: schema migrated from ${needed - 1} to ${KNOWN_SCHEMA} (${ran} migrations); a gateway that does not know migration ${needed} can no longer use it (restore the backup taken before the upgrade to go back)`,
    );
  } finally {
    await s.close();
  }
  // Made by one that knows it: the migrations since are ones it can live with, and the line says only the move.
  const t = new SqliteStore(databaseAt(needed));
  try {
    const ran = KNOWN_SCHEMA - needed;
    expect(migratedLine(t.migrated)).toBe(`database: schema migrated from ${needed} to ${KNOWN_SCHEMA} (${ran} migration${ran === 1 ? "" : "s"})`);
  } finally {
    await t.close();
  }
});

test("a new database, and one already migrated, say nothing", async () => {
  const path = `${process.env.TMPDIR ?? "/tmp"}/migrated-${process.pid}.db`;
  const fresh = SqliteStore.open(path);
  try {
    expect(fresh.migrated).toMatchObject({ from: 0, to: KNOWN_SCHEMA });
    expect(migratedLine(fresh.migrated)).toBeUndefined();
  } finally {
    await fresh.close();
  }
  const again = SqliteStore.open(path);
  try {
    expect(again.migrated).toBeUndefined();
    expect(migratedLine(again.migrated)).toBeUndefined();
  } finally {
    await again.close();
    for (const f of [path, `${path}-wal`, `${path}-shm`]) await Bun.file(f).delete().catch(() => {});
  }
});

test("openStore says the migration in the log it is given, at once: a start that fails later has still migrated", async () => {
  const path = `${process.env.TMPDIR ?? "/tmp"}/migrated-open-${process.pid}.db`;
  const older = databaseAt(KNOWN_SCHEMA - 1);
  await Bun.write(path, older.serialize());
  older.close();
  const lines: string[] = [];
  const s = await openStore(path, { log: (l) => lines.push(l) });
  try {
    expect(lines).toEqual([`database: schema migrated from ${KNOWN_SCHEMA - 1} to ${KNOWN_SCHEMA} (1 migration)`]);
  } finally {
    await s.close();
  }
  const again: string[] = [];
  await (await openStore(path, { log: (l) => again.push(l) })).close();
  expect(again).toEqual([]);
  for (const f of [path, `${path}-wal`, `${path}-shm`]) await Bun.file(f).delete().catch(() => {});
});
