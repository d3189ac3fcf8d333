import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { storeContract, aDevice } from "./_contract.ts";
import { SqliteStore } from "./sqlite.ts";

describe("SqliteStore", () => {
  storeContract(async () => SqliteStore.open(":memory:"));
});

describe("SqliteStore on a file (events committed by the writer thread)", () => {
  const opened: SqliteStore[] = [];
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "gw-sqlite-file-"));
  });
  afterAll(async () => {
    for (const s of opened) await s.close();
    await rm(dir, { recursive: true, force: true });
  });
  let n = 0;
  storeContract(async () => {
    const s = SqliteStore.open(join(dir, `c${n++}.db`));
    opened.push(s);
    return s;
  });

  test("reopening a database file keeps data and does not re-run migrations", async () => {
    const dir = await mkdtemp(join(tmpdir(), "gw-sqlite-"));
    try {
      const path = join(dir, "gateway.db");
      const a = SqliteStore.open(path);
      const d = aDevice();
      await a.putDevice(d);
      await a.close();
      const b = SqliteStore.open(path);
      expect((await b.getDevice(d.uuid))?.uuid).toBe(d.uuid);
      await b.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
