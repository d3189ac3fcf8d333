import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { aDevice } from "./_contract.ts";
import { SqliteStore } from "./sqlite.ts";

// The sightings flush, the leader lease, apps-states and system info write on SQLite; on a
// database file they run on the event writer's connection, so while another connection holds the
// write lock the main thread (every check-in) keeps running instead of sleeping in SQLite's busy
// handler.

let dir: string;
let path: string;
let store: SqliteStore;
let other: SqliteStore;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "writer-offload-"));
  path = join(dir, "gateway.db");
  store = SqliteStore.open(path);
  other = SqliteStore.open(path); // a second replica on the same database
});

afterAll(async () => {
  await store.close();
  await other.close();
  await rm(dir, { recursive: true, force: true });
});

/** Largest gap between 2 ms timer ticks while `work` runs: how long the event loop was held. */
async function loopStall<T>(work: () => Promise<T>): Promise<{ result: T; stallMs: number }> {
  let last = performance.now();
  let stallMs = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    stallMs = Math.max(stallMs, now - last);
    last = now;
  }, 2);
  try {
    const result = await work();
    return { result, stallMs: Math.max(stallMs, performance.now() - last) };
  } finally {
    clearInterval(timer);
  }
}

describe("SqliteStore on a file: device writes off the main thread", () => {
  test("with the write lock held 300 ms elsewhere, a sightings flush, a lease renewal, an event, apps-states and system info neither stall the event loop nor get lost", async () => {
    const d = await store.putDevice(aDevice({ tags: ["a"] }));
    expect(await store.tryLease("timestamp", "me", 6000)).toBe(true);

    // Another connection (a backup, a second replica, the writer's own long batch) takes the write lock.
    const holder = new Database(path);
    holder.exec("PRAGMA busy_timeout = 5000");
    holder.exec("BEGIN IMMEDIATE");
    const released = Bun.sleep(300).then(() => holder.exec("COMMIT"));

    const at = "2031-01-01T00:00:00.000Z";
    const event = { id: "e-1", deviceTime: at, eventType: { id: "EcuDownloadStarted", version: 2 }, event: { correlationId: "c" } };
    const states = { deviceTime: at, apps: { httpd: { uri: "r/x@sha256:1", state: "healthy" as const, services: [] } } };
    const network = { hostname: "h", mac: "m", local_ipv4: "1.2.3.4" };
    const { result, stallMs } = await loopStall(async () => {
      const started = performance.now();
      const writes = Promise.all([
        store.recordSightings(
          Array.from({ length: 2048 }, (_, i) => ({ uuid: i ? `absent-${i}` : d.uuid, at, currentTarget: "t-9" })),
        ),
        store.tryLease("timestamp", "me", 6000),
        store.appendEvents(d.uuid, [event]),
        store.putAppsStates(d.uuid, states),
        store.putSystemInfo(d.uuid, "network", network),
      ]);
      const [, held, stored] = await writes;
      return { held, stored, waitedMs: performance.now() - started };
    });
    await released;
    holder.close();

    // The writes waited for the lock (on the writer's thread) ...
    expect(result.waitedMs).toBeGreaterThan(250);
    // ... while the event loop kept running (a 2 ms timer was never late by more than a scheduling hiccup;
    // on the main thread these writes sleep in the busy handler for the whole 300 ms, or fail after 5 s).
    expect(stallMs).toBeLessThan(200); // not 300: the writes' whole wait
    expect(result.held).toBe(true);
    expect(result.stored).toBe(1);
    expect(await store.getDevice(d.uuid)).toMatchObject({ lastSeen: at, currentTarget: "t-9" });
    expect((await store.listEvents(d.uuid)).map((e) => e.id)).toEqual(["e-1"]);
    expect(await store.appendEvents(d.uuid, [event])).toBe(0); // stored once
    expect(await store.getAppsStates(d.uuid)).toEqual(states);
    expect(await store.getSystemInfo(d.uuid)).toEqual({ network });
  });

  test("two stores on one file never both hold a lease; release hands it over at once", async () => {
    const wins = await Promise.all([
      store.tryLease("job", "a", 6000),
      other.tryLease("job", "b", 6000),
      store.tryLease("job", "c", 6000),
      other.tryLease("job", "d", 6000),
    ]);
    expect(wins.filter(Boolean).length).toBe(1);
    const winner = ["a", "b", "c", "d"][wins.indexOf(true)]!;
    const loser = winner === "a" ? "b" : "a";
    expect(await other.tryLease("job", loser, 6000)).toBe(false);
    await store.releaseLease("job", winner);
    expect(await other.tryLease("job", loser, 6000)).toBe(true);
  });
});
