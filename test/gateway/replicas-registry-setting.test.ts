/**
 * Replicas on one PostgreSQL database must serve one registry. Started with different ones they
 * came up silently and split the fleet: a blob pushed through one replica was 404 on another
 * (each --registry-dir its own empty folder), and `/token?service=fleet-registry` through the
 * balancer was 200 and 400 in turn (one replica with --external-registry-service, one without).
 * The first start records the setting in the database (for the embedded registry, an id it
 * also writes into the storage) and a replica started with another is refused, saying both; a
 * mount of the same storage at another path is the same storage.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { SQL } from "bun";
import { startGateway, startReplica, type GatewayHandle } from "../harness/gateway.ts";
import { startPostgres, type PostgresHandle } from "../harness/postgres.ts";
import { tempDir } from "../harness/tmp.ts";

const SERVICE = ["--external-registry-service", "fleet-registry"];
let pg: PostgresHandle;
const started: GatewayHandle[] = [];
const start = async (g: Promise<GatewayHandle>) => {
  const h = await g;
  started.push(h);
  return h;
};
/** Why a start was refused (its log's last lines), or "" when it started. */
const refusal = (g: Promise<GatewayHandle>) => start(g).then(() => "", (e: Error) => e.message);

beforeAll(async () => {
  pg = await startPostgres();
}, 120_000);

afterAll(async () => {
  for (const g of started) await g.stop();
  await pg?.stop();
}, 120_000);

/** The database's record of the registry setting (gateway_meta), or undefined. */
async function recorded(db: string): Promise<string | undefined> {
  const sql = new SQL({ url: db, max: 1 });
  try {
    const rows = (await sql.unsafe("SELECT value FROM gateway_meta WHERE key = 'registry_setting'")) as { value: string }[];
    return rows[0]?.value;
  } finally {
    await sql.close();
  }
}

describe("replicas of the embedded registry", () => {
  let db: string;
  let first: GatewayHandle;
  let storage: string;

  beforeAll(async () => {
    db = await pg.createDatabase("embedded_setting");
    storage = join(await tempDir("regdir4-"), "registry");
    first = await start(startGateway({ db, args: ["--registry-dir", storage] }));
  }, 120_000);

  test("the first start writes an id into the storage and records it; a replica mounting that storage at another path starts and serves its blobs", async () => {
    const id = readFileSync(join(storage, "gateway-registry-id"), "utf8").trim();
    expect(JSON.parse((await recorded(db))!)).toEqual({ kind: "embedded", id, dir: storage });
    const mount = join(await tempDir("mount-"), "registry");
    symlinkSync(storage, mount);
    const second = await start(startReplica(first, { db, args: ["--registry-dir", mount] }));
    const blob = crypto.getRandomValues(new Uint8Array(1024));
    const digest = `sha256:${new Bun.CryptoHasher("sha256").update(blob).digest("hex")}`;
    expect((await first.adminFetch(`/v2/main/shared/blobs/uploads/?digest=${digest}`, { method: "POST", body: blob })).status).toBe(201);
    expect((await second.adminFetch(`/v2/main/shared/blobs/${digest}`, { method: "HEAD" })).status).toBe(200);
  }, 120_000);

  test("a replica given another storage (a new folder, or an empty one) is refused naming both, and nothing is written there", async () => {
    const before = await recorded(db);
    const id = JSON.parse(before!).id as string;
    const other = join(await tempDir("regdir5-"), "registry");
    expect(await refusal(startReplica(first, { db, args: ["--registry-dir", other] }))).toContain(
      `the replicas on it serve the embedded registry in the storage whose gateway-registry-id holds ${id} (first served from ${storage}), ` +
        `and this one the embedded registry in ${other} (--registry-dir ${other}), another storage: it has no gateway-registry-id`,
    );
    expect(existsSync(other)).toBe(false);
    mkdirSync(other);
    expect(await refusal(startReplica(first, { db, args: ["--registry-dir", other] }))).toContain("Give every replica that same storage as its --registry-dir");
    expect(existsSync(join(other, "gateway-registry-id"))).toBe(false);
    expect(await recorded(db)).toBe(before);
  }, 120_000);

  test("a replica started with --external-registry-service is refused naming both", async () => {
    expect(await refusal(startReplica(first, { db, args: ["--registry-dir", storage, ...SERVICE] }))).toContain(
      `and this one the external registry "fleet-registry" (--external-registry-service fleet-registry). Start every replica without --external-registry-service; ` +
        "to change the registry of the whole fleet on purpose, stop every replica, start one with the new setting and --registry-change, then the others with that setting",
    );
  }, 120_000);
});

describe("replicas of an external registry", () => {
  let db: string;
  let first: GatewayHandle;

  beforeAll(async () => {
    db = await pg.createDatabase("external_setting");
    first = await start(startGateway({ db, args: SERVICE }));
  }, 120_000);

  test("a replica without --external-registry-service, or with another name, is refused naming both", async () => {
    expect(JSON.parse((await recorded(db))!)).toEqual({ kind: "external", service: "fleet-registry" });
    const theirs = `the replicas on it serve the external registry "fleet-registry" (--external-registry-service fleet-registry), and this one`;
    const embedded = await refusal(startReplica(first, { db }));
    expect(embedded).toContain(`${theirs} the embedded registry in `);
    expect(embedded).toContain("(no --registry-dir). Give every replica the same --external-registry-service fleet-registry;");
    expect(await refusal(startReplica(first, { db, args: ["--external-registry-service", "other"] }))).toContain(
      `${theirs} the external registry "other" (--external-registry-service other)`,
    );
  }, 120_000);

  test("the fleet's registry changes on purpose with serve --registry-change: refused while a replica serves, recorded by that start once every replica is stopped", async () => {
    const before = await recorded(db);
    // The first replica still serves: a start changing the registry beside it would split the fleet.
    const beside = await refusal(startReplica(first, { db, args: ["--registry-change"] }));
    expect(beside).toContain("another replica is serving it (it holds the signer lease) with the external registry \"fleet-registry\" (--external-registry-service fleet-registry); stop every replica first");
    expect(await recorded(db)).toBe(before);
    // Killed (no clean hand-over of its lease): the lease nobody renews any more is waited out.
    await first.kill();
    const changed = await start(startGateway({ db, dataDir: first.dataDir, args: ["--registry-change"] }));
    expect(JSON.parse((await recorded(db))!)).toMatchObject({ kind: "embedded", dir: join(first.dataDir, "registry") });
    const log = readFileSync(changed.logFile, "utf8");
    expect(log).toContain("gateway: --registry-change: another replica holds the signer lease: waiting for it to run out");
    expect(log).toContain("gateway: --registry-change: the fleet's registry was the external registry \"fleet-registry\" (--external-registry-service fleet-registry); this start records its own.");
    expect(log).toContain("targets published before name images the new registry may not hold: push them there again");
    // The others follow with the new setting; one still on the old is refused as before.
    expect(await refusal(startReplica(changed, { db, args: SERVICE }))).toContain("the replicas on it serve the embedded registry in the storage whose gateway-registry-id holds");
    await start(startReplica(changed, { db, args: ["--registry-dir", join(first.dataDir, "registry")] }));
    // Given again once recorded, it changes nothing.
    await changed.stop();
    const again = await start(startGateway({ db, dataDir: first.dataDir, args: ["--registry-change"] }));
    expect(readFileSync(again.logFile, "utf8")).toContain("gateway: --registry-change: the database records this registry setting already: nothing changed");
  }, 120_000);
});

test("on SQLite, serve --registry-change starts with its registry and says there is nothing recorded to change", async () => {
  const dataDir = join(await tempDir("sqlite-change-"), "data");
  const first = await start(startGateway({ dataDir, db: join(dataDir, "gateway.db") }));
  await first.stop();
  const moved = join(await tempDir("regdir6-"), "registry");
  const again = await start(startGateway({ dataDir, db: join(dataDir, "gateway.db"), args: ["--registry-change", "--registry-dir", moved] }));
  expect(readFileSync(again.logFile, "utf8")).toContain("gateway: --registry-change: a gateway on SQLite records no registry setting (it may move its registry): nothing to change");
  expect((await again.adminFetch("/v2/")).status).toBe(200);
}, 120_000);

describe("serve --registry-change beside a replica that is not the signer", () => {
  test("the signer stopped cleanly (its lease given back), another replica still serving: the change is refused all the same", async () => {
    const db = await pg.createDatabase("change_beside_follower");
    // A short lease keeps the waits short; the follower asks for it every third of one.
    const lease = ["--signer-lease", "2"];
    const signer = await start(startGateway({ db, args: [...SERVICE, ...lease] }));
    await start(startReplica(signer, { db, args: [...SERVICE, ...lease] }));
    const before = await recorded(db);
    // Stopped cleanly, the signer gives its lease back: free, it says nothing yet of the follower.
    await signer.stop();
    const beside = await refusal(startGateway({ db, dataDir: signer.dataDir, args: ["--registry-change", ...lease] }));
    expect(beside).toContain("another replica is serving it (it holds the signer lease)");
    expect(await recorded(db)).toBe(before);
  }, 120_000);
});
