/**
 * The wrong folder or flag value given to `gateway registry gc`, `gateway restore` and
 * `gateway keys init-root`, through the real CLI on real files: gc refuses a --registry-dir that
 * is not laid out as the registry's storage (exit 1, as for one that is not there) and removes
 * nothing; every wrong --data of restore is bad usage (exit 2) naming --data; a threshold above
 * the role's key count is bad usage naming --threshold and the count. None of them writes anything.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { createBackup, restoreBackup } from "../../gateway/backup/backup.ts";
import { openSecret } from "../../gateway/backup/secret.ts";
import { UsageError } from "../../lib/cli/command.ts";
import { backupOfDatabase, harnessDb, startGateway, testDbKind, withoutDatabaseNote } from "../harness/gateway.ts";
import { removeTempDir, run, tempDir } from "../harness/tmp.ts";

const REPO = resolve(import.meta.dir, "../..");
const PASS = "a long enough passphrase";
let work: string;
let data: string; // a stopped gateway's data dir
let currentRoot: string; // its 1.root.json

/** `gateway ARGS` run in `work`, so relative paths are the user's. */
const gw = (...args: string[]) =>
  run([process.execPath, join(REPO, "gateway/main.ts"), ...args], { cwd: work, env: { GATEWAY_BACKUP_PASSPHRASE: PASS }, allowFail: true });

/** Every file under `dir`, relative, with its content: what "nothing touched" is checked against. */
const snapshot = (dir: string) =>
  Object.fromEntries(readdirSync(dir, { recursive: true }).map(String).sort().map((f) => [f, statSync(join(dir, f)).isFile() ? readFileSync(join(dir, f), "utf8") : "/"]));

beforeAll(async () => {
  work = await tempDir("gc-restore-input-");
  const g = await startGateway();
  const root = await g.adminFetch("/repo/1.root.json");
  expect(root.status).toBe(200);
  currentRoot = join(work, "current.root.json");
  writeFileSync(currentRoot, await root.text());
  await g.stop();
  data = g.dataDir;
  // On PostgreSQL (OTA_TEST_DB=postgres) as its operator backs up: with the --db, and a pg_dump beside.
  const b = await gw("backup", "--data", data, "--out", "gw.backup", ...(await backupOfDatabase(data, join(work, "gw.backup"))));
  expect(withoutDatabaseNote(b.stderr)).toBe("");
  expect(b.code).toBe(0);
}, 120_000);
afterAll(() => removeTempDir(work));

describe("gateway registry gc", () => {
  test("a --registry-dir that holds something else is not the registry's storage: exit 1, nothing removed", async () => {
    const other = join(work, "photos");
    mkdirSync(join(other, "uploads", "2024"), { recursive: true });
    writeFileSync(join(other, "index.html"), "<h1>my site</h1>");
    writeFileSync(join(other, "uploads", "2024", "cat.jpg"), "jpg");
    utimesSync(join(other, "uploads", "2024", "cat.jpg"), new Date(0), new Date(0));
    const before = snapshot(other);
    const r = await gw("registry", "gc", "--data", data, "--registry-dir", other, "--grace", "1s");
    expect({ code: r.code, out: r.stdout }).toEqual({ code: 1, out: "" });
    expect(r.stderr).toBe(
      `gateway registry gc: ${other} is not the gateway registry's storage (it holds index.html, which the registry does not make: only blobs/, repositories/, uploads/, tmp/, deltas/): nothing removed\n`,
    );
    expect(snapshot(other)).toEqual(before);
  });

  test("the empty registry a new gateway made is an empty registry, not an error", async () => {
    const r = await gw("registry", "gc", "--data", data);
    expect({ code: r.code, out: r.stdout, err: r.stderr }).toEqual({ code: 0, out: "removed 0 blobs (0 bytes) and 0 stale uploads; kept 0\n", err: "" });
  });
});

describe("gateway restore", () => {
  test("every wrong --data is bad usage (exit 2) naming --data, and nothing is written", async () => {
    mkdirSync(join(work, "busy"));
    writeFileSync(join(work, "busy", "notes.txt"), "mine\n");
    writeFileSync(join(work, "afile"), "not a folder\n");
    const cases: [string[], string][] = [
      [["--data", "busy"], "--data busy exists and is not empty: restore into a new folder, or pass --force to replace a gateway data dir"],
      [["--data", "busy", "--force"], "--force replaces only a gateway data dir or an empty folder, and busy is neither"],
      [["--data", "afile"], "--data afile is a file, not a folder: give the folder to restore the data dir into"],
      [["--data", "afile/"], "--data afile/ is a file, not a folder: give the folder to restore the data dir into"],
      [["--data", "afile", "--force"], "--data afile is a file, not a folder: give the folder to restore the data dir into"],
      [["--data", "afile/data"], "Cannot restore into --data afile/data: afile is a file, not a folder"],
    ];
    const before = readdirSync(work).sort();
    for (const [flags, why] of cases) {
      const r = await gw("restore", "gw.backup", ...flags);
      expect({ flags, code: r.code, out: r.stdout, first: r.stderr.split("\n")[0]!.slice(0, `gateway restore: ${why}`.length) }).toEqual({
        flags,
        code: 2,
        out: "",
        first: `gateway restore: ${why}`,
      });
      expect(r.stderr).toContain("Run 'gateway restore --help' for usage.");
    }
    expect(readdirSync(work).sort()).toEqual(before);
    expect(readdirSync(join(work, "busy"))).toEqual(["notes.txt"]);
    expect(readFileSync(join(work, "afile"), "utf8")).toBe("not a folder\n");
  });

  test("backup --out replaces an earlier backup, never another file (a typo naming the database or a key)", async () => {
    writeFileSync(join(work, "notes.txt"), "mine\n");
    const db = harnessDb(data); // on PostgreSQL its --db
    const backup = (out: string) => createBackup({ dataDir: data, out: join(work, out), secret: { passphrase: PASS }, ...(db ? { db } : {}) });
    await expect(backup("notes.txt")).rejects.toThrow(
      new UsageError(`--out ${join(work, "notes.txt")} exists and is not a gateway backup: a backup replaces only an earlier backup (or an empty file); choose another --out, or remove it`),
    );
    expect(readFileSync(join(work, "notes.txt"), "utf8")).toBe("mine\n");
    writeFileSync(join(work, "again.backup"), readFileSync(join(work, "gw.backup")));
    writeFileSync(join(work, "empty.backup"), "");
    for (const out of ["again.backup", "empty.backup"]) expect((await backup(out)).factory).toBe("main");
  });

  // A SQLite data dir's --db: one served with PostgreSQL refuses any file as --db first (test/gateway/postgres.test.ts).
  test.skipIf(testDbKind() === "postgres")("backup --db that is no SQLite database names the file and what it is for (SQLite said only 'file is not a database')", async () => {
    writeFileSync(join(work, "notes.db"), "mine\n");
    const backup = (db: string) => createBackup({ dataDir: data, out: join(work, "db.backup"), db: join(work, db), secret: { passphrase: PASS } });
    await expect(backup("notes.db")).rejects.toThrow(`Cannot back up the database ${join(work, "notes.db")}: it is not a SQLite database (give --db as gateway serve has it)`);
    await expect(backup("busy")).rejects.toThrow(`Cannot back up the database ${join(work, "busy")}: it is a directory (give --db as gateway serve has it)`);
    // A URL of another scheme is refused as serve refuses it, not looked for as a file.
    const mysql = createBackup({ dataDir: data, out: join(work, "db.backup"), db: "mysql://ota:pw@db/ota", secret: { passphrase: PASS } });
    await expect(mysql).rejects.toThrow(new UsageError("Cannot use --db mysql://ota:***@db/ota: give a postgres:// URL or a SQLite file path"));
    expect(existsSync(join(work, "db.backup"))).toBe(false);
  });

  test("--passphrase-file and --identity together are bad usage (the passphrase file was ignored)", async () => {
    await expect(openSecret({ "passphrase-file": "a-pass", identity: "a-key" })).rejects.toThrow(new UsageError("Give --passphrase-file or --identity, not both"));
  });

  test("a --data under folders that are not there: a backup it refuses leaves none of them made", async () => {
    writeFileSync(join(work, "not-a-backup"), "hello\n");
    const restore = (file: string) => restoreBackup({ file: join(work, file), dataDir: join(work, "new/deeper/data"), secret: { passphrase: PASS } });
    await expect(restore("not-a-backup")).rejects.toThrow("Not a gateway backup");
    expect(existsSync(join(work, "new"))).toBe(false);
    await restore("gw.backup"); // a good one is restored there, the folders made
    expect(existsSync(join(work, "new/deeper/data/factory.json"))).toBe(true);
    rmSync(join(work, "new"), { recursive: true });
  });
});

describe("gateway keys init-root", () => {
  test("a threshold above the role's key count is bad usage naming --threshold and the count; nothing is written", async () => {
    const ceremony = join(work, "ceremony");
    mkdirSync(ceremony);
    for (const who of ["alice", "bob"]) expect((await gw("keys", "generate", "--out", join(ceremony, who))).code).toBe(0);
    const before = readdirSync(ceremony).sort();
    const keys = ["--key", `root=${join(ceremony, "alice.pub.json")}`, "--key", `root=${join(ceremony, "bob.pub.json")}`];
    const draft = ["keys", "init-root", "--current", currentRoot, "--out", join(ceremony, "2.root.json")];

    const given = await gw(...draft, ...keys, "--threshold", "root=5");
    expect({ code: given.code, out: given.stdout }).toEqual({ code: 2, out: "" });
    expect(given.stderr.split("\n")[0]).toBe("gateway keys init-root: --threshold root=5: root has only 2 key(s) (given with --key), so at most root=2");

    // A role without --key keeps the current root's keys: one online targets key.
    const kept = await gw(...draft, "--threshold", "targets=2");
    expect({ code: kept.code, out: kept.stdout }).toEqual({ code: 2, out: "" });
    expect(kept.stderr.split("\n")[0]).toBe("gateway keys init-root: --threshold targets=2: targets has only 1 key(s) (in the current root), so at most targets=1");

    expect(readdirSync(ceremony).sort()).toEqual(before);
    expect(existsSync(join(ceremony, "1.root.json"))).toBe(false);

    const ok = await gw(...draft, ...keys, "--threshold", "root=2");
    expect(ok.stderr).toBe("");
    expect(ok.code).toBe(0);
  });
});
