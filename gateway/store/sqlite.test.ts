import { describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { storeContract, aDevice } from "./_contract.ts";
import { SqliteStore } from "./sqlite.ts";

describe("SqliteStore", () => {
  storeContract(async () => SqliteStore.open(":memory:"));

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
