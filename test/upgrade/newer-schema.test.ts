/**
 * A gateway put back after an upgrade (a bad release, a rolled-back package) meets a database
 * the newer gateway migrated. It must start when the newer migrations leave the database usable
 * to it, and otherwise refuse with words and change nothing, on SQLite and PostgreSQL alike.
 * The newer gateway is played by what it leaves in the database: a schema_migrations row this
 * gateway does not know, and gateway_meta's schema_needed (gateway/store/_migrations.ts).
 *
 * @module
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { SQL } from "bun";
import { join } from "node:path";
import { startGateway } from "../harness/gateway.ts";
import { startPostgres, type PostgresHandle } from "../harness/postgres.ts";
import { tempDir } from "../harness/tmp.ts";
import { KNOWN_SCHEMA } from "../../gateway/store/_migrations.ts";

const MAIN = join(import.meta.dir, "..", "..", "gateway", "main.ts");
const NEWER = KNOWN_SCHEMA + 1;

/** What a newer gateway leaves and what this one reads, on one kind of database. */
interface Db {
  /** The --db flag, if any. */
  flag: string[];
  /** One statement, its parameters written `?`. */
  exec(statement: string, params?: (string | number)[]): Promise<void>;
  rows(query: string): Promise<unknown[]>;
}

function sqlite(dataDir: string): Db {
  const path = join(dataDir, "gateway.db");
  const open = <T>(f: (db: Database) => T): T => {
    const db = new Database(path, { strict: true });
    try {
      return f(db);
    } finally {
      db.close();
    }
  };
  return {
    flag: [],
    exec: async (s, p = []) => void open((db) => db.query(s).run(...p)),
    rows: async (q) => open((db) => db.query(q).all()),
  };
}

function postgres(url: string): Db {
  const run = async <T>(f: (sql: SQL) => Promise<T>): Promise<T> => {
    const sql = new SQL({ url, max: 1 });
    try {
      return await f(sql);
    } finally {
      await sql.close();
    }
  };
  return {
    flag: ["--db", url],
    exec: (s, p = []) => {
      let n = 0;
      return run(async (sql) => void (await sql.unsafe(s.replace(/\?/g, () => `$${++n}`), p)));
    },
    rows: (q) => run(async (sql) => [...((await sql.unsafe(q)) as unknown[])]),
  };
}

/** What a user would compare before and after: the schema's record and the fleet. */
const snapshot = async (db: Db) => ({
  migrations: await db.rows("SELECT version, description FROM schema_migrations ORDER BY version"),
  meta: await db.rows("SELECT key, value FROM gateway_meta ORDER BY key"),
  devices: await db.rows("SELECT uuid FROM devices ORDER BY uuid"),
});

let pg: PostgresHandle;
beforeAll(async () => {
  pg = await startPostgres();
});
afterAll(async () => {
  await pg?.stop();
});

describe.each(["sqlite", "postgres"])("a database a newer gateway migrated (%s)", (kind) => {
  /** A data dir and database this gateway made and served once. */
  async function served(): Promise<{ dataDir: string; db: Db }> {
    const dataDir = join(await tempDir("newer-schema-"), "data");
    const url = kind === "postgres" ? await pg.createDatabase(`newer_${Math.random().toString(36).slice(2, 10)}`) : undefined;
    // SQLite named too: OTA_TEST_DB=postgres would otherwise give the gateway a PostgreSQL database.
    const gw = await startGateway({ dataDir, db: url ?? join(dataDir, "gateway.db") });
    await gw.stop();
    return { dataDir, db: url ? postgres(url) : sqlite(dataDir) };
  }

  const newerMigration = (db: Db) =>
    db.exec("INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)", [NEWER, "from a newer gateway", new Date().toISOString()]);
  const setNeeded = (db: Db, n: number) => db.exec("UPDATE gateway_meta SET value = ? WHERE key = 'schema_needed'", [String(n)]);

  test("that this one cannot use: serve refuses, says why and what to do, and changes nothing", async () => {
    const { dataDir, db } = await served();
    await newerMigration(db);
    await setNeeded(db, NEWER);
    const before = await snapshot(db);
    // A gateway that starts is ended after 20 s: its exit code then says it did not refuse.
    const p = Bun.spawn([process.execPath, MAIN, "serve", "--data", dataDir, "--listen", "127.0.0.1:0", ...db.flag], { stdout: "pipe", stderr: "pipe", timeout: 20_000 });
    const [err, code] = await Promise.all([new Response(p.stderr).text(), p.exited]);
    expect({ code, err }).toEqual({
      code: 1,
      err: expect.stringContaining(
        `a newer gateway has migrated it, and it needs a gateway that knows schema migration ${NEWER} (this one knows up to ${KNOWN_SCHEMA}); ` +
          "nothing was changed: start the newer gateway again, or put back the database backed up before the upgrade to run this one",
      ),
    });
    expect(err).not.toMatch(/^\s+at /m); // words, not a stack trace
    expect(await snapshot(db)).toEqual(before);
  }, 90_000);

  test("that this one can use (the newer migrations need nothing of it): serve starts, and keeps what the newer one needs", async () => {
    const { dataDir, db } = await served();
    await newerMigration(db);
    const [{ value: needed }] = (await db.rows("SELECT value FROM gateway_meta WHERE key = 'schema_needed'")) as [{ value: string }];
    expect(Number(needed)).toBeLessThanOrEqual(KNOWN_SCHEMA);
    const gw = await startGateway({ dataDir, db: db.flag[1] ?? join(dataDir, "gateway.db") });
    expect((await gw.adminFetch("/admin/devices")).status).toBe(200);
    await gw.stop();
    expect(await snapshot(db)).toMatchObject({ meta: expect.arrayContaining([{ key: "schema_needed", value: needed }]) });
    expect(((await snapshot(db)).migrations as { version: number }[]).map((m) => Number(m.version))).toContain(NEWER);
  }, 90_000);
});
