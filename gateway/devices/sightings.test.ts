import { describe, expect, setSystemTime, test } from "bun:test";
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

  test("settled() writes first only check-ins with news (a first, a new target, tags or apps) or older than two intervals", async () => {
    const store = SqliteStore.open(":memory:");
    await store.putDevice({ uuid: "d1", name: "d", hardwareId: "h", factory: "main", tags: ["main"], certSerial: "1" });
    let writes = 0;
    const write = store.recordSightings.bind(store);
    store.recordSightings = async (batch) => {
      writes++;
      return await write(batch);
    };
    const s = new Sightings(store, 60_000);
    s.note("d1", "main", "h-1", "a", (await store.getDevice("d1"))!);
    await s.settled();
    expect(writes).toBe(1); // its first check-in
    const row = (await store.getDevice("d1"))!;
    expect(row).toMatchObject({ currentTarget: "h-1", apps: ["a"] });
    expect(row.lastSeen).toBeString();
    s.note("d1", "main", "h-1", "a", row);
    await s.settled();
    expect([writes, s.pending]).toEqual([1, 1]); // nothing new but the time: the next flush writes it
    for (const [tags, target, apps] of [
      ["main", "h-2", "a"],
      ["beta", "h-2", "a"],
      ["beta", "h-2", "a,b"],
    ] as const) {
      const known = (await store.getDevice("d1"))!;
      s.note("d1", tags, target, apps, known);
      await s.settled();
      expect(await store.getDevice("d1")).toMatchObject({ currentTarget: target, apps: apps.split(",") });
    }
    expect(writes).toBe(4);
    await s.stop();
    // Without a timer, whatever is pending is overdue.
    const now = new Sightings(store, 0);
    now.note("d1", "beta", "h-2", "a,b", (await store.getDevice("d1"))!);
    await now.settled();
    expect([writes, now.pending]).toEqual([5, 0]);
    await store.close();
  });

  test("settled() counts a check-in's wait on the monotonic clock: a wall-clock step back does not hold it back", async () => {
    const store = SqliteStore.open(":memory:");
    await store.putDevice({ uuid: "d1", name: "d", hardwareId: "h", factory: "main", tags: ["main"], certSerial: "1" });
    const s = new Sightings(store, 50);
    s.note("d1", "main", "h-1", "a", (await store.getDevice("d1"))!);
    await s.settled(); // its first: written
    await s.stop(); // no timer from here: only settled() writes
    try {
      s.note("d1", "main", "h-1", "a", (await store.getDevice("d1"))!);
      setSystemTime(new Date(Date.now() - 3_600_000)); // the wall clock steps back an hour
      await Bun.sleep(120); // two intervals and more
      await s.settled();
      expect(s.pending).toBe(0);
    } finally {
      setSystemTime();
      await store.close();
    }
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
