/**
 * The --db mistakes an operator makes at the first `gateway serve` (the real CLI): a database not
 * created yet, a user PostgreSQL does not know, a user without the right to create tables, a SQLite
 * file of another program or no SQLite file at all. Each exits 1 with what is wrong and what to do,
 * and nothing is written to the database named.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { openStore } from "../../gateway/store/open.ts";
import { startPostgres, type PostgresHandle } from "../harness/postgres.ts";
import { run, tempDir } from "../harness/tmp.ts";

const MAIN = join(import.meta.dir, "..", "..", "gateway", "main.ts");
let pg: PostgresHandle;
let dir: string;

const serve = (data: string, db: string) => {
  const r = Bun.spawnSync([process.execPath, MAIN, "serve", "--data", join(dir, data), "--listen", "127.0.0.1:0", "--db", db], { stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode, err: r.stderr.toString().trim() };
};
const psql = (db: string, sql: string) => run(["psql", "-h", "127.0.0.1", "-p", String(pg.port), "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-c", sql]);

beforeAll(async () => {
  pg = await startPostgres();
  dir = await tempDir("walk-pg-start-");
}, 120_000);

afterAll(async () => {
  await pg?.stop();
}, 120_000);

describe("gateway serve --db mistakes", () => {
  test("a database not created yet: exit 1, and how to create it", () => {
    expect(serve("nodb", `postgres://postgres:pw@${pg.host}/pilot`)).toEqual({
      code: 1,
      err: `gateway serve: Cannot use the database postgres://postgres:***@${pg.host}/pilot: database "pilot" does not exist (create it first: createdb -O postgres pilot, or CREATE DATABASE pilot OWNER postgres)`,
    });
    expect(existsSync(join(dir, "nodb"))).toBe(false);
  }, 60_000);

  test("a user PostgreSQL does not know: exit 1, check the user and password", () => {
    expect(serve("norole", `postgres://nobody:pw@${pg.host}/postgres`)).toEqual({
      code: 1,
      err: `gateway serve: Cannot use the database postgres://nobody:***@${pg.host}/postgres: role "nobody" does not exist (check the user and password in --db; a password may also come from PGPASSWORD)`,
    });
  }, 60_000);

  test("a user that may not create tables: exit 1 with the grant to give; once given, the same --db opens", async () => {
    await psql("postgres", "CREATE ROLE weak LOGIN");
    await psql("postgres", "CREATE DATABASE weakdb");
    await psql("weakdb", "REVOKE CREATE ON SCHEMA public FROM PUBLIC");
    const url = `postgres://weak@${pg.host}/weakdb`;
    expect(serve("weak", url)).toEqual({
      code: 1,
      err:
        `gateway serve: Cannot use the database ${url}: permission denied for schema public ` +
        "(the gateway creates its tables at start: make weak the owner of weakdb (ALTER DATABASE weakdb OWNER TO weak) or GRANT CREATE ON SCHEMA public TO weak)",
    });
    await psql("weakdb", "GRANT CREATE ON SCHEMA public TO weak");
    await (await openStore(url, { log: () => {} })).close();
  }, 60_000);

  test("another program's SQLite file: refused, its tables left as they were", () => {
    const path = join(dir, "inventory.db");
    const other = new Database(path);
    other.run("CREATE TABLE parts (id INTEGER PRIMARY KEY, name TEXT)");
    other.close();
    expect(serve("foreign", path)).toEqual({
      code: 1,
      err: `gateway serve: Cannot use ${path} as the gateway's database: it is another program's database (tables parts), not a gateway's; nothing was written to it. Give a new file name, or the gateway's own database`,
    });
    const after = new Database(path, { readonly: true });
    expect(after.query("SELECT name FROM sqlite_master WHERE type = 'table'").all()).toEqual([{ name: "parts" }]);
    after.close();
    // The new data dir this start made (a CA, keys) is removed again: a CA nobody uses is not left to be copied.
    expect(existsSync(join(dir, "foreign"))).toBe(false);
  }, 60_000);

  test("a file that is not SQLite: refused, its bytes left as they were", () => {
    const path = join(dir, "notes.txt");
    writeFileSync(path, "not a database\n".repeat(100));
    expect(serve("notsqlite", path)).toEqual({
      code: 1,
      err: `gateway serve: Cannot use ${path} as the gateway's database: it is not a SQLite database; nothing was written to it. Give a new file name, or the gateway's own database`,
    });
    expect(readFileSync(path, "utf8")).toBe("not a database\n".repeat(100));
    expect(existsSync(join(dir, "notsqlite"))).toBe(false);
  }, 60_000);
});
