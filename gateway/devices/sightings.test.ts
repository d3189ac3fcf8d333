import { describe, expect, test } from "bun:test";
import { SqliteStore } from "../store/sqlite.ts";
import { Sightings } from "./sightings.ts";

describe("Sightings", () => {
  test("coalesces check-ins and writes them in one flush", async () => {
    const store = SqliteStore.open(":memory:");
    await store.putDevice({ uuid: "d1", name: "d", hardwareId: "h", factory: "main", tags: ["main"], certSerial: "1", tagsFromDevice: true });
    const s = new Sightings(store, 0);
    s.note("d1", "main, beta", "h-1", null);
    s.note("d1", null, null, "a,b");
    expect(s.pending).toBe(1);
    expect((await store.getDevice("d1"))!.lastSeen).toBeNull();
    await s.flush();
    expect(s.pending).toBe(0);
    expect(await store.getDevice("d1")).toMatchObject({ tags: ["main", "beta"], currentTarget: "h-1", apps: ["a", "b"] });
    expect((await store.getDevice("d1"))!.lastSeen).toBeString();
    await s.stop();
    await store.close();
  });

  test("keeps at most 32 list items of at most 128 characters, without control characters or spaces", async () => {
    const store = SqliteStore.open(":memory:");
    await store.putDevice({ uuid: "d1", name: "d", hardwareId: "h", factory: "main", tags: [], certSerial: "1", tagsFromDevice: true });
    const s = new Sightings(store, 0);
    const many = Array.from({ length: 40 }, (_, i) => `t${i}`).join(",");
    s.note("d1", `${many},${"x".repeat(129)}`, null, "ok,bad\x1b[2J,a b");
    await s.flush();
    const d = (await store.getDevice("d1"))!;
    expect(d.tags).toHaveLength(32);
    expect(d.tags[0]).toBe("t0");
    expect(d.apps).toEqual(["ok"]);
    await s.stop();
    await store.close();
  });

  test("keeps only what could be a target tag from x-ats-tags, and a made-up one takes no place among the 32", async () => {
    const store = SqliteStore.open(":memory:");
    await store.putDevice({ uuid: "d1", name: "d", hardwareId: "h", factory: "main", tags: [], certSerial: "1", tagsFromDevice: true });
    const s = new Sightings(store, 0);
    const madeUp = Array.from({ length: 40 }, (_, i) => `eu/${i}`).join(",");
    s.note("d1", `${madeUp},main,beta,main`, null, "web/api,web/api");
    await s.flush();
    const d = (await store.getDevice("d1"))!;
    expect(d.tags).toEqual(["main", "beta"]);
    expect(d.apps).toEqual(["web/api"]); // apps are only reported: any item without spaces or controls
    await s.stop();
    await store.close();
  });

  test("a failed write keeps what it did not write for the next flush, and later flushes still run", async () => {
    const store = SqliteStore.open(":memory:");
    await store.putDevice({ uuid: "d1", name: "d", hardwareId: "h", factory: "main", tags: ["main"], certSerial: "1" });
    const s = new Sightings(store, 0);
    const write = store.recordSightings.bind(store);
    let failures = 1;
    store.recordSightings = async (batch) => {
      if (failures-- > 0) throw new Error("disk full");
      return await write(batch);
    };
    s.note("d1", null, "h-1", null);
    await expect(s.flush()).rejects.toThrow("disk full");
    await s.flush();
    expect(await store.getDevice("d1")).toMatchObject({ currentTarget: "h-1" });
    expect((await store.getDevice("d1"))!.lastSeen).toBeString();
    await s.stop();
    await store.close();
  });
});
