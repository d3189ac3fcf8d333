import { describe, expect, test } from "bun:test";
import { SqliteStore } from "../store/sqlite.ts";
import { Sightings } from "./sightings.ts";

describe("Sightings", () => {
  test("coalesces check-ins and writes them in one flush", async () => {
    const store = SqliteStore.open(":memory:");
    await store.putDevice({ uuid: "d1", name: "d", hardwareId: "h", factory: "main", tags: ["main"], certSerial: "1" });
    const s = new Sightings(store, 0);
    s.note("d1", { tags: "main, beta", target: "h-1" });
    s.note("d1", { apps: "a,b" });
    expect(s.pending).toBe(1);
    expect((await store.getDevice("d1"))!.lastSeen).toBeNull();
    await s.flush();
    expect(s.pending).toBe(0);
    expect(await store.getDevice("d1")).toMatchObject({ tags: ["main", "beta"], currentTarget: "h-1", apps: ["a", "b"] });
    expect((await store.getDevice("d1"))!.lastSeen).toBeString();
    await s.stop();
    await store.close();
  });
});
