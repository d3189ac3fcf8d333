import { afterAll, beforeAll, describe } from "bun:test";
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

afterAll(async () => {
  await Promise.all(opened.map((s) => s.close()));
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
