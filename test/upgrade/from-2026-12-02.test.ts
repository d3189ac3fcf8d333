/**
 * Installing this release over last week's (2026-12-02): the gateway's data dir and database and
 * a device's state, as that release left them (test/fixtures/upgrade/2026-12-02/README.md), are
 * served by this gateway and driven by this fioup, on SQLite and on PostgreSQL. Nothing the user
 * had may be lost and no device may need registering again.
 *
 * A fixture, not the old release started here: an old checkout in every `npm test` would be slow
 * and would break with the machine's Bun; what it left on disk is what an upgrade meets. The
 * PostgreSQL database is that release's schema (migrations 1-32, which are never edited) with
 * the fixture's rows loaded into it.
 *
 * @module
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { SQL } from "bun";
import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { MIGRATIONS, MIGRATIONS_TABLE, splitStatements } from "../../gateway/store/_migrations.ts";
import { EMPTY_SHA256 } from "../../lib/api/target.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { startPostgres, type PostgresHandle } from "../harness/postgres.ts";
import { freePort, run, tempDir, until } from "../harness/tmp.ts";

const REPO = resolve(import.meta.dir, "../..");
const FIXTURE = join(REPO, "test/fixtures/upgrade/2026-12-02");
const TOKENS = JSON.parse(readFileSync(join(FIXTURE, "tokens.json"), "utf8")) as { registration: string; publish: string; viewer: string };
const DEVICE = "4a7a776a-cbdf-45c0-9879-004ae7402591";
const ROLLOUT = "01m94jvrds05h17x";
/** The last migration of that release. */
const OLD_SCHEMA = 32;

/** The tables of that release's schema, parents first (rollout_events and group_members refer to others). */
const TABLES = ["schema_migrations", "gateway_meta", "devices", "events", "apps_states", "system_info", "registration_tokens", "api_tokens", "tuf_metadata", "leases", "device_groups", "group_members", "rollouts", "rollout_devices", "rollout_events"];

/** The fixture's gateway database, built from its dump. */
function fixtureSqlite(path: string): Database {
  const db = new Database(path, { create: true, strict: true });
  db.exec(readFileSync(join(FIXTURE, "data/gateway.sql"), "utf8"));
  return db;
}

/** That release's schema on PostgreSQL, holding the fixture's rows. */
async function fixturePostgres(url: string, scratch: string): Promise<void> {
  const from = fixtureSqlite(join(scratch, "rows.db"));
  const sql = new SQL({ url, max: 1 });
  try {
    await sql.unsafe(MIGRATIONS_TABLE);
    for (const m of MIGRATIONS.filter((m) => m.version <= OLD_SCHEMA)) for (const s of splitStatements(m.postgres)) await sql.unsafe(s);
    for (const table of TABLES) {
      for (const row of from.query(`SELECT * FROM ${table}`).all() as Record<string, unknown>[]) {
        const cols = Object.keys(row);
        // labels is JSONB on PostgreSQL: given as text, it is parsed, not stored as a JSON string.
        const values = cols.map((c, i) => (c === "labels" ? `$${i + 1}::text::jsonb` : `$${i + 1}`));
        await sql.unsafe(`INSERT INTO ${table} (${cols.join(", ")}) VALUES (${values.join(", ")})`, Object.values(row));
      }
    }
    await sql.unsafe("SELECT setval(pg_get_serial_sequence('events', 'seq'), (SELECT max(seq) FROM events))");
    await sql.unsafe("SELECT setval(pg_get_serial_sequence('rollout_events', 'id'), (SELECT max(id) FROM rollout_events))");
  } finally {
    from.close();
    await sql.close();
  }
}

/** The gateway CLI of this tree (its exit code, stdout and stderr). */
const gateway = (...args: string[]) => run([process.execPath, join(REPO, "gateway/main.ts"), ...args], { cwd: REPO, allowFail: true });

/** This tree's fioup on a device root. */
const fioup = (root: string, ...args: string[]) => run([process.execPath, join(REPO, "fioup/main.ts"), ...args], { cwd: REPO, env: { FIOUP_ROOT: root }, allowFail: true });

/** The fixture's device, its sota.toml pointed at `url` (the gateway moved port, nothing else). */
async function fixtureDevice(url: string): Promise<string> {
  const root = await tempDir("upgrade-device-");
  cpSync(join(FIXTURE, "device"), root, { recursive: true });
  const sota = join(root, "var/sota");
  const db = new Database(join(sota, "fioup.db"), { create: true, strict: true });
  db.exec(readFileSync(join(sota, "fioup.sql"), "utf8"));
  db.close();
  const toml = join(sota, "sota.toml");
  writeFileSync(toml, readFileSync(toml, "utf8").replace("https://127.0.0.1:38500", url));
  return root;
}

let pg: PostgresHandle;
beforeAll(async () => {
  pg = await startPostgres();
});
afterAll(async () => {
  await pg?.stop();
});

describe.each(["sqlite", "postgres"])("last week's gateway and device, upgraded (%s)", (kind) => {
  let gw: GatewayHandle;
  let device: string;
  let db: string | undefined;

  beforeAll(async () => {
    const dataDir = join(await tempDir("upgrade-data-"), "data");
    cpSync(join(FIXTURE, "data"), dataDir, { recursive: true });
    if (kind === "sqlite") fixtureSqlite(join(dataDir, "gateway.db")).close();
    else await fixturePostgres((db = await pg.createDatabase(`upgrade_${process.pid}`)), await tempDir("upgrade-rows-"));
    const port = await freePort();
    // SQLite named too: OTA_TEST_DB=postgres would otherwise give the gateway an empty database.
    gw = await startGateway({ dataDir, port, db: db ?? join(dataDir, "gateway.db") });
    device = await fixtureDevice(gw.url);
  }, 90_000);
  afterAll(async () => {
    await gw?.stop();
  });

  test("the admin CLI lists the device, its labels, groups, rollout and updates; the old tokens are listed", async () => {
    const list = await gateway("devices", "list", "--data", gw.dataDir);
    expect(list).toMatchObject({ code: 0, stdout: expect.stringMatching(new RegExp(`${DEVICE}\\s+fixture-device\\s+amd64-linux\\s+master\\s+amd64-linux-2`)) });
    const show = await gateway("devices", "show", "--data", gw.dataDir, DEVICE);
    expect(show.code).toBe(0);
    expect(show.stdout).toContain("labels:      region=eu");
    expect(show.stdout).toMatch(/update \S+: amd64-linux-1 ok\nupdate \S+: amd64-linux-2 ok/);
    const groups = await gateway("groups", "list", "--data", gw.dataDir);
    expect(groups.stdout).toMatch(/eu\s+dynamic\s+1\s+region=eu/);
    expect(groups.stdout).toMatch(/pinned\s+static\s+1/);
    expect((await gateway("rollouts", "list", "--data", gw.dataDir)).stdout).toMatch(new RegExp(`${ROLLOUT}\\s+2\\s+group eu`));
    const tokens = await gateway("tokens", "list", "--data", gw.dataDir);
    expect(tokens.stdout).toMatch(/publish\s+ci/);
    expect(tokens.stdout).toMatch(/viewer\s+floor/);
  }, 60_000);

  test("the tokens that release printed still work: publish (whoami), viewer (dashboard sign-in), registration (a new device)", async () => {
    const whoami = await gw.adminFetch("/admin/whoami", { headers: { authorization: `Bearer ${TOKENS.publish}` } });
    expect({ status: whoami.status, body: await whoami.json() }).toEqual({ status: 200, body: { role: "publish", publicUrl: gw.url, canSignTargets: true } });
    const login = await gw.adminFetch("/ui/login", { method: "POST", body: new URLSearchParams({ token: TOKENS.viewer }), redirect: "manual", headers: { "content-type": "application/x-www-form-urlencoded" } });
    expect(login.status).toBe(303);
    const fresh = await tempDir("upgrade-new-device-");
    const reg = await fioup(fresh, "register", "--server", gw.url, "--token", TOKENS.registration, "--hwid", "amd64-linux", "--name", "after-upgrade", "--format", "json");
    expect({ code: reg.code, err: reg.stderr }).toMatchObject({ code: 0 });
  }, 60_000);

  test("the device checks in with its old certificate and state, and sees a target signed after the upgrade", async () => {
    const lastSeen = async () => Date.parse(((await (await gw.adminFetch(`/admin/devices/${DEVICE}`)).json()) as { lastSeen: string }).lastSeen);
    const seenBefore = await lastSeen();
    const before = await fioup(device, "check", "--format", "json");
    expect({ code: before.code, err: before.stderr }).toMatchObject({ code: 3 }); // no update: it runs version 2
    expect(before.stdout).toContain("amd64-linux-2");
    const entry = {
      length: 0,
      hashes: { sha256: EMPTY_SHA256 },
      custom: { version: "3", hardwareIds: ["amd64-linux"], tags: ["master"], docker_compose_apps: { web: { uri: `${gw.host}/main/web@sha256:${"ab".repeat(32)}` } } },
    };
    const add = await gw.adminFetch("/admin/targets", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ targets: { "amd64-linux-3": entry } }) });
    expect(add.status).toBeLessThan(300);
    // The fixture's rollout is running: its tick may move it on during the check, which is then
    // answered in the view its timestamp pinned (docs/signed-views.md, "One view per check").
    const after = await fioup(device, "check", "--format", "json");
    expect({ code: after.code, err: after.stderr }).toMatchObject({ code: 0 });
    expect(after.stdout).toContain("amd64-linux-3");
    // The check-ins reached the database (sightings are written in batches).
    await until("the device seen again", lastSeen, (t) => t > seenBefore, 15_000, 200);
  }, 60_000);

  test("a device whose files hold seconds that release took and this one caps keeps checking in, and is told", async () => {
    // Last week's `gateway serve --polling-seconds 1209600` wrote two weeks into each new device's
    // sota.toml, and its fioup took an owner's download_stall_seconds of two hours: this fioup
    // refused both (exit 20 on every command, the daemon too) until they were capped.
    const root = await fixtureDevice(gw.url);
    const toml = join(root, "var/sota/sota.toml");
    writeFileSync(toml, readFileSync(toml, "utf8").replace("polling_seconds = 5", "polling_seconds = 1209600"));
    const dropIn = join(root, "etc/sota/conf.d/60-slow-link.toml");
    mkdirSync(dirname(dropIn), { recursive: true });
    writeFileSync(dropIn, "[fioup]\ndownload_stall_seconds = 7200\n");
    const r = await fioup(root, "check", "--format", "json");
    // 0 or 3 (no update) as the targets signed by the other tests go; 20 (config invalid) before.
    expect({ checkedIn: r.code === 0 || r.code === 3, code: r.code }).toMatchObject({ checkedIn: true });
    expect(r.stderr).toContain(`warning: uptane.polling_seconds: 1209600 is more than 604800 (a week), the most fioup takes: it polls every 604800 s (set in ${toml}); lower it there to silence this`);
    expect(r.stderr).toContain(`warning: fioup.download_stall_seconds: 7200 is more than 3600 (an hour), the most fioup takes: it resumes a stalled download after 3600 s (set in ${dropIn})`);
  }, 60_000);

  test("gateway backup takes the upgraded data dir", async () => {
    const out = join(await tempDir("upgrade-backup-"), "gw.backup");
    const pass = join(await tempDir("upgrade-pass-"), "pass");
    writeFileSync(pass, "a passphrase for the upgrade test", { mode: 0o600 });
    const r = await gateway("backup", "--data", gw.dataDir, "--out", out, "--passphrase-file", pass, ...(db ? ["--db", db] : []));
    expect({ code: r.code, err: r.stderr }).toMatchObject({ code: 0 });
    expect(r.stdout).toContain(kind === "sqlite" ? "database included" : "database not included (PostgreSQL)");
  }, 60_000);
});

test("last week's data dir served with PostgreSQL, started without --db, is refused instead of given an empty SQLite fleet", async () => {
  // That release kept no DIR/database: a data dir with a CA and no gateway.db was served with PostgreSQL.
  const dataDir = join(await tempDir("upgrade-nodb-"), "data");
  cpSync(join(FIXTURE, "data"), dataDir, { recursive: true });
  const r = await gateway("serve", "--data", dataDir, "--listen", `127.0.0.1:${await freePort()}`);
  expect({ code: r.code, err: r.stderr }).toMatchObject({ code: 1 });
  expect(r.stderr).toContain(`Cannot serve ${dataDir} without --db: it was served with a PostgreSQL database; give the same --db postgres://...`);
  expect(existsSync(join(dataDir, "gateway.db"))).toBe(false);
}, 60_000);
