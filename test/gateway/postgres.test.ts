/**
 * The gateway on PostgreSQL (a private cluster from the harness): two gateway
 * instances share one database, as a scaled-out deployment does.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RegistrationResponse } from "../../lib/api/index.ts";
import { SQL } from "bun";
import { createBackup, restoreBackup } from "../../gateway/backup/backup.ts";
import { DataDirMismatchError, EmptyDatabaseError, startGatewayServer, type RunningGateway, type ServeOptions } from "../../gateway/gateway.ts";
import { DatabaseFlagMissingError } from "../../gateway/data-dir.ts";
import { StoreOpenError } from "../../gateway/store/open.ts";
import { RegistrySettingMismatchError } from "../../gateway/registry/setting.ts";
import { startPostgres } from "../harness/postgres.ts";
import { freePort, until } from "../harness/tmp.ts";
import { gatewayRun } from "../harness/cli.ts";
import { post, tlsFetch } from "./_client.ts";
import { makeDeviceCsr } from "./_device.ts";
import { anEvent } from "./_fixture.ts";

let pg: Awaited<ReturnType<typeof startPostgres>>;
let dir: string;
let a: RunningGateway;
let b: RunningGateway;

beforeAll(async () => {
  pg = await startPostgres();
  dir = await mkdtemp(join(tmpdir(), "gw-pg-"));
  a = await startGatewayServer({ dataDir: dir, listen: "127.0.0.1:0", db: pg.url, log: () => {} });
  b = await startGatewayServer({ dataDir: dir, listen: "127.0.0.1:0", db: pg.url, log: () => {} });
}, 120_000);

afterAll(async () => {
  await a?.stop();
  await b?.stop();
  await pg?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 120_000);

const entry = (version: string) => ({
  length: 0,
  hashes: { sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
  custom: { version, hardwareIds: ["amd64-linux"], tags: ["main"], docker_compose_apps: { httpd: { uri: `127.0.0.1:1/main/httpd@sha256:${"b".repeat(64)}` } } },
});

describe("gateway on PostgreSQL", () => {
  test("a device registered at one gateway checks in at another; revocation and targets reach both", async () => {
    const ca = a.data.ca.certPem;
    const adminHeaders = { "content-type": "application/json", authorization: `Bearer ${a.data.adminToken}` };
    const k = await makeDeviceCsr();
    const reg = await tlsFetch({ ca })(`${a.url}/devices`, {
      ...post({ name: "d", uuid: k.uuid, csr: k.csrPem, "hardware-id": "amd64-linux" }),
      headers: adminHeaders,
    });
    expect(reg.status).toBe(201);
    const body = (await reg.json()) as RegistrationResponse;
    const dev = tlsFetch({ ca, cert: body.certificate, key: k.keyPem });

    expect((await dev(`${b.url}/events`, post([anEvent("pg-1"), anEvent("pg-2")]))).status).toBe(200);
    expect((await dev(`${b.url}/events`, post([anEvent("pg-2")]))).status).toBe(200);
    expect((await b.gw.store.listEvents(k.uuid)).map((e) => e.id)).toEqual(["pg-1", "pg-2"]);

    // A target published through A is signed once and served by B.
    const add = await tlsFetch({ ca })(`${a.url}/admin/targets`, { ...post({ targets: { "amd64-linux-7": entry("7") } }), headers: adminHeaders });
    expect(add.status).toBe(200);
    await Bun.sleep(1100); // B's metadata cache
    const targets = (await (await dev(`${b.url}/repo/targets.json`)).json()) as { signed: { targets: Record<string, unknown> } };
    expect(Object.keys(targets.signed.targets)).toEqual(["amd64-linux-7"]);

    const rev = await tlsFetch({ ca })(`${a.url}/admin/devices/${k.uuid}/revoke`, { method: "POST", headers: adminHeaders });
    expect(rev.status).toBe(200);
    expect((await dev(`${a.url}/device`)).status).toBe(403);
    // B sees it once its device cache entry expires (5 s).
    const status = await until("B to stop answering the revoked device 200", async () => (await dev(`${b.url}/device`)).status, (s) => s !== 200, 8000, 250);
    expect(status).toBe(403);
  }, 30_000);

  test("a one-use registration token raced through two gateways registers exactly one device", async () => {
    const ca = a.data.ca.certPem;
    const adminHeaders = { "content-type": "application/json", authorization: `Bearer ${a.data.adminToken}` };
    const made = await tlsFetch({ ca })(`${a.url}/admin/tokens`, { ...post({ maxUses: 1 }), headers: adminHeaders });
    const { token } = (await made.json()) as { token: string };
    const attempt = async (url: string) => {
      const k = await makeDeviceCsr();
      const res = await tlsFetch({ ca })(`${url}/devices`, {
        ...post({ name: "d", uuid: k.uuid, csr: k.csrPem, "hardware-id": "amd64-linux" }),
        headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      });
      return res.status;
    };
    const codes = await Promise.all([a.url, b.url, a.url, b.url, a.url, b.url].map(attempt));
    expect(codes.sort()).toEqual([201, 401, 401, 401, 401, 401]);
  }, 60_000);

  test("its data dir started without --db is refused, not served from a new empty SQLite database", async () => {
    const started = startGatewayServer({ dataDir: dir, listen: "127.0.0.1:0", log: () => {} });
    await expect(started).rejects.toThrow(DatabaseFlagMissingError);
    await expect(started).rejects.toThrow(/it was served with a PostgreSQL database; give the same --db postgres:/);
    expect(await stat(join(dir, "gateway.db")).catch(() => undefined)).toBeUndefined();
  }, 60_000);

  /** The gateways' data dir backed up and restored into WORK/data, as an operator moves it to a new host. */
  async function restoredCopy(work: string): Promise<string> {
    const secret = { passphrase: "a long enough passphrase" };
    await createBackup({ dataDir: dir, out: join(work, "gw.backup"), secret, db: pg.url });
    await restoreBackup({ file: join(work, "gw.backup"), dataDir: join(work, "data"), secret });
    return join(work, "data");
  }

  test("a restored data dir given an empty database (pg_restore skipped) is refused, and nothing is written to that database", async () => {
    const work = await mkdtemp(join(tmpdir(), "gw-pg-restored-"));
    try {
      const restored = await restoredCopy(work);
      const empty = await pg.createDatabase("never_restored");
      const started = startGatewayServer({ dataDir: restored, listen: "127.0.0.1:0", db: empty, log: () => {} });
      await expect(started).rejects.toThrow(EmptyDatabaseError);
      await expect(started).rejects.toThrow(
        /this data dir was served with a database that holds its fleet; this database is empty: restore it first with pg_restore, or give the --db of that database/,
      );
      // Not bound to the CA, no TUF metadata: not even the schema was made.
      const sql = new SQL({ url: empty, max: 1 });
      try {
        expect(await sql.unsafe("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).toEqual([]);
      } finally {
        await sql.close();
      }
      // The database it was served with (the one pg_restore would bring back) is taken, with the
      // registry storage that database's fleet was served from (the backup holds none): a new,
      // empty one is another registry (gateway/registry/setting.ts).
      const elsewhere = startGatewayServer({ dataDir: restored, listen: "127.0.0.1:0", db: pg.url, log: () => {} });
      await expect(elsewhere).rejects.toThrow(RegistrySettingMismatchError);
      const back = await startGatewayServer({ dataDir: restored, listen: "127.0.0.1:0", db: pg.url, registryDir: join(dir, "registry"), log: () => {} });
      await back.stop();
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }, 60_000);

  test("a restored data dir refused by a database check (no --db, an empty database, another CA's) is left as restore made it: no registry/", async () => {
    const work = await mkdtemp(join(tmpdir(), "gw-pg-refused-"));
    try {
      const restored = await restoredCopy(work);
      const asRestored = (await readdir(restored)).sort();
      expect(asRestored).not.toContain("registry");
      const otherCa = await pg.createDatabase("other_ca");
      const elsewhere = await startGatewayServer({ dataDir: join(work, "other"), listen: "127.0.0.1:0", db: otherCa, log: () => {} });
      await elsewhere.stop();
      const refusals: [ServeOptions["db"], new (...args: never[]) => Error][] = [
        [undefined, DatabaseFlagMissingError],
        [await pg.createDatabase("restored_empty"), EmptyDatabaseError],
        [otherCa, DataDirMismatchError],
      ];
      for (const [db, refusal] of refusals) {
        await expect(startGatewayServer({ dataDir: restored, listen: "127.0.0.1:0", ...(db ? { db } : {}), log: () => {} })).rejects.toThrow(refusal);
        expect((await readdir(restored)).sort()).toEqual(asRestored);
      }
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }, 60_000);

  test("a database created with another data dir (another CA) is refused", async () => {
    const other = await mkdtemp(join(tmpdir(), "gw-pg-other-"));
    try {
      await expect(startGatewayServer({ dataDir: other, listen: "127.0.0.1:0", db: pg.url, log: () => {} })).rejects.toThrow(DataDirMismatchError);
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  }, 60_000);
});

describe("gateway backup and restore on PostgreSQL, through the CLI", () => {
  let work: string;
  let passFile: string;
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "gw-pg-backup-"));
    passFile = join(work, "pass");
    await writeFile(passFile, "a long enough passphrase\n", { mode: 0o600 });
  });
  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });
  const backupCli = (...args: string[]) => gatewayRun(["backup", "--data", dir, "--passphrase-file", passFile, ...args]);
  /** pg.url with another database name (or port). */
  const dbUrl = (name: string, port?: number) => {
    const url = new URL(pg.url);
    url.pathname = `/${name}`;
    if (port) url.port = String(port);
    return url.toString();
  };

  test("backup checks that --db is this data dir's database: one unreachable, missing, empty or another gateway's is refused, and nothing is written", async () => {
    const out = join(work, "refused.backup");
    const port = await freePort(); // nothing listens there
    const closed = backupCli("--out", out, "--db", dbUrl("gw", port));
    expect([closed.code, closed.err.split("\n")[0]]).toEqual([1, `gateway backup: Cannot use the database ${dbUrl("gw", port)}: connection refused (is PostgreSQL running there?)`]);
    expect(backupCli("--out", out, "--db", dbUrl("nope"))).toEqual({
      code: 1,
      out: "",
      err: `gateway backup: Cannot back up ${dir} with the database ${dbUrl("nope")}: there is no such database (wrong --db?): give the --db gateway serve runs this data dir with\n`,
    });
    const empty = await pg.createDatabase("backup_empty");
    expect(backupCli("--out", out, "--db", empty)).toEqual({
      code: 1,
      out: "",
      err: `gateway backup: Cannot back up ${dir} with the database ${empty}: it holds no gateway's data (wrong --db?): give the --db gateway serve runs this data dir with\n`,
    });
    // Another gateway's database: bound to the CA of another data dir, as serve would refuse it.
    const otherDb = await pg.createDatabase("backup_other");
    const otherDir = join(work, "other");
    await (await startGatewayServer({ dataDir: otherDir, listen: "127.0.0.1:0", db: otherDb, log: () => {} })).stop();
    expect(backupCli("--out", out, "--db", otherDb)).toEqual({
      code: 1,
      out: "",
      err: `gateway backup: Cannot back up ${dir} with the database ${otherDb}: it was created by a gateway with another CA (wrong --db or --data?)\n`,
    });
    // Without --db: the data dir says it is served with PostgreSQL, so its database is not DIR/gateway.db.
    const noDb = backupCli("--out", out);
    expect([noDb.code, noDb.err.split("\n")[0]]).toEqual([
      2,
      `gateway backup: --data ${dir} is served with a PostgreSQL database: give its --db postgres://... as gateway serve has it (the backup checks it is this data dir's database; the database itself is backed up with pg_dump)`,
    ]);
    // Nor a SQLite file (one left from before the move to PostgreSQL would be backed up, and served after a restore).
    const stale = join(work, "stale.db");
    await writeFile(stale, "");
    const sqlite = backupCli("--out", out, "--db", stale);
    expect([sqlite.code, sqlite.err.split("\n")[0]]).toEqual([
      2,
      `gateway backup: --data ${dir} is served with a PostgreSQL database: give its --db postgres://... as gateway serve has it, not ${stale} (the backup checks it is this data dir's database; the database itself is backed up with pg_dump)`,
    ]);
    expect(existsSync(out)).toBe(false);
  }, 60_000);

  test("backup's check of a --db that fails connects once: the failure is said in serve's words without asking the database again", async () => {
    // A server that refuses each login as PostgreSQL does a wrong password (an ErrorResponse, SQLSTATE 28P01).
    let accepted = 0;
    const field = (code: string, text: string) => Buffer.concat([Buffer.from(code), Buffer.from(text), Buffer.from([0])]);
    const fields = Buffer.concat([field("S", "FATAL"), field("V", "FATAL"), field("C", "28P01"), field("M", 'password authentication failed for user "postgres"'), Buffer.from([0])]);
    const refusal = Buffer.concat([Buffer.from("E"), Buffer.from(new Uint8Array(new Uint32Array([0]).buffer)), fields]);
    refusal.writeUInt32BE(4 + fields.length, 1);
    const server = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open: () => void accepted++,
        // An SSLRequest (8 bytes, code 80877103) is answered "no TLS"; the startup message with the refusal.
        data: (s, d) => {
          if (d.length === 8 && d.readUInt32BE(4) === 80877103) s.write("N");
          else s.end(refusal);
        },
      },
    });
    try {
      const db = dbUrl("gw", server.port);
      const secret = { passphrase: "a long enough passphrase" };
      const err = await createBackup({ dataDir: dir, out: join(work, "once.backup"), secret, db }).catch((e: Error) => e);
      expect(err).toBeInstanceOf(StoreOpenError);
      expect((err as Error).message).toStartWith(`Cannot use the database ${db}: `);
      expect((err as Error).message).toContain("password");
      expect(accepted).toBe(1);
      expect(existsSync(join(work, "once.backup"))).toBe(false);
    } finally {
      server.stop(true);
    }
  });

  test("backup with this data dir's --db says the pg_dump to run with that URL, its password left out (pg_dump reads it itself); restore says when to pg_restore it and when not, and the data dir needs its --db", async () => {
    const withPassword = new URL(pg.url);
    withPassword.password = "s3cret"; // trust authentication: any password is taken
    const shown = withPassword.toString().replace(":s3cret@", "@");
    const file = join(work, "gw.backup");
    const b = backupCli("--out", file, "--db", withPassword.toString(), "--format", "json");
    expect(b.code).toBe(0);
    expect((JSON.parse(b.out) as { database: string }).database).toBe("postgres");
    expect(b.err).toContain(`\n  pg_dump --format=custom --file=${join(work, "gw.pgdump")} '${shown}'\n`);
    expect(b.err).toContain("the password is left out: pg_dump reads it from PGPASSWORD or ~/.pgpass");
    expect(b.err).not.toContain("s3cret");
    expect(b.err).not.toContain("<the --db URL>");

    const restored = join(work, "restored");
    const r = gatewayRun(["restore", file, "--data", restored, "--passphrase-file", passFile]);
    expect(r.code).toBe(0);
    // Both cases: the database survived the gateway (no pg_restore: it holds what came since), or it was lost too.
    const said = r.err.replace(/\s+/g, " ");
    expect(said).toContain("the database is still there (only the gateway host was lost): do not pg_restore;");
    expect(said).toContain(`the --db it had: gateway serve --data ${restored} --db postgres://...`);
    expect(said).toContain("the database was lost too: make a new, empty database (createdb -O USER NAME)");
    expect(said).toContain("pg_restore --no-owner --dbname=postgres://USER@HOST/NAME FILE.pgdump");
    expect(said).toContain("other gateways still serve that database: starting this data dir with their --db adds a replica");
    // Made without --with-registry: the storage the database names is not in it.
    expect(said).toContain(
      "the registry is not in this backup (made without --with-registry), and the database names the storage the fleet was served from: serve with that storage as --registry-dir if it is still there (or its replicas share it), else with --registry-change",
    );
    expect(said).not.toContain("pg_restore it before starting the gateway");
    // Refused without its --db instead of being served from a new, empty SQLite database.
    const noDb = gatewayRun(["serve", "--data", restored, "--listen", "127.0.0.1:0"]);
    expect(noDb.code).toBe(1);
    expect(noDb.err).toContain("it was served with a PostgreSQL database; give the same --db postgres://");
    expect(existsSync(join(restored, "gateway.db"))).toBe(false);
  }, 60_000);
});
