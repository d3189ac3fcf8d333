import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { SQL } from "bun";
import { startPostgres } from "../../test/harness/postgres.ts";
import { storeContract } from "./_contract.ts";
import { PostgresStore } from "./postgres.ts";

let pg: Awaited<ReturnType<typeof startPostgres>>;
const opened: PostgresStore[] = [];
let n = 0;

beforeAll(async () => {
  pg = await startPostgres();
});

// Each test's stores are closed when it ends: kept open to the end, their pools (up to 4
// connections each, one test's database each) ran into the cluster's max_connections.
afterEach(async () => {
  await Promise.all(opened.splice(0).map((s) => s.close()));
});

afterAll(async () => {
  await pg?.stop();
});

/** Every test gets its own database, so "empty store" tests see an empty store. */
async function freshStore(): Promise<PostgresStore> {
  const name = `contract_${process.pid}_${n++}`;
  const admin = new SQL({ url: pg.url, max: 1 });
  await admin.unsafe(`CREATE DATABASE ${name}`);
  await admin.close();
  const url = new URL(pg.url);
  url.pathname = `/${name}`;
  const store = await PostgresStore.connect(url.toString(), { max: 4 });
  opened.push(store);
  return store;
}

describe("PostgresStore", () => storeContract(freshStore));

describe("PostgresStore where pg_trgm cannot be created", () => {
  test("the migrations still apply, without the trigram indexes, and the device search still finds by part of a name", async () => {
    // A role that may create tables in the schema but not extensions in the database (trusted
    // extensions need CREATE on the database), as a locked-down managed database may give a gateway.
    const name = `notrgm_${process.pid}`;
    const role = `gw_${process.pid}`;
    const admin = new SQL({ url: pg.url, max: 1 });
    await admin.unsafe(`CREATE DATABASE ${name}`);
    await admin.unsafe(`CREATE ROLE ${role} LOGIN`);
    await admin.close();
    const url = new URL(pg.url);
    url.pathname = `/${name}`;
    const owner = new SQL({ url: url.toString(), max: 1 });
    await owner.unsafe(`GRANT USAGE, CREATE ON SCHEMA public TO ${role}`);
    url.username = role;
    const store = await PostgresStore.connect(url.toString(), { max: 2 });
    opened.push(store);
    const indexes = (await owner.unsafe("SELECT indexname FROM pg_indexes WHERE tablename = 'devices'")) as { indexname: string }[];
    const extensions = (await owner.unsafe("SELECT extname FROM pg_extension")) as { extname: string }[];
    const applied = (await owner.unsafe("SELECT max(version)::int AS v FROM schema_migrations")) as { v: number }[];
    await owner.close();
    expect(indexes.map((i) => i.indexname)).not.toContain("devices_name_trgm");
    expect(extensions.map((e) => e.extname)).not.toContain("pg_trgm");
    expect(applied[0]!.v).toBeGreaterThanOrEqual(35);
    await store.putDevice({ uuid: "u-1", name: "kiosk-lobby", hardwareId: "hw", factory: "f", tags: ["main"], certSerial: "01" });
    const found = await store.searchDevices({ text: "OSK-LOB", offlineBefore: new Date().toISOString() });
    expect(found.devices.map((d) => d.uuid)).toEqual(["u-1"]);
  });
});
