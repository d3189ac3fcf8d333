import { expect, setSystemTime, test } from "bun:test";
import { aDevice } from "../store/_contract.ts";
import { SqliteStore } from "../store/sqlite.ts";
import type { DeviceRow } from "../store/types.ts";
import { DeviceCache } from "./cache.ts";

test("DeviceCache: expired rows are dropped as new devices arrive, not kept until the size cap", async () => {
  const store = await SqliteStore.open(":memory:");
  try {
    const devices = await Promise.all([1, 2, 3, 4].map(() => store.putDevice(aDevice())));
    const cache = new DeviceCache(store, { ttlMs: 1000 });
    for (const d of devices.slice(0, 3)) expect((await cache.get(d.uuid))?.uuid).toBe(d.uuid);
    expect(cache.size).toBe(3);
    expect(cache.fresh(devices[0]!.uuid)?.row?.uuid).toBe(devices[0]!.uuid);
    await Bun.sleep(1100);
    expect(cache.fresh(devices[0]!.uuid)).toBeUndefined();
    expect((await cache.get(devices[3]!.uuid))?.uuid).toBe(devices[3]!.uuid);
    expect(cache.size).toBe(1); // the three expired rows went with this insert
    // A fresh entry is served without a read, and a re-read moves it to the back.
    expect((await cache.get(devices[0]!.uuid))?.uuid).toBe(devices[0]!.uuid);
    expect(cache.size).toBe(2);
  } finally {
    await store.close();
  }
});

test("DeviceCache: the size cap drops the oldest entry", async () => {
  const store = await SqliteStore.open(":memory:");
  try {
    const devices = await Promise.all([1, 2, 3].map(() => store.putDevice(aDevice())));
    const cache = new DeviceCache(store, { ttlMs: 60_000, max: 2 });
    for (const d of devices) await cache.get(d.uuid);
    expect(cache.size).toBe(2);
    expect(cache.fresh(devices[0]!.uuid)).toBeUndefined();
    expect(cache.fresh(devices[2]!.uuid)?.row?.uuid).toBe(devices[2]!.uuid);
  } finally {
    await store.close();
  }
});

test("DeviceCache: entries invalidated or read again are dropped once, and the cache stays bounded through many rounds", async () => {
  const store = await SqliteStore.open(":memory:");
  try {
    const devices = await Promise.all(Array.from({ length: 50 }, () => store.putDevice(aDevice())));
    const cache = new DeviceCache(store, { ttlMs: 500 });
    for (let round = 0; round < 4; round++) {
      for (const d of devices) {
        expect((await cache.get(d.uuid))?.uuid).toBe(d.uuid);
        if (round % 2) cache.invalidate(d.uuid); // gone now, its place in the order left behind
      }
      expect(cache.size).toBe(round % 2 ? 0 : 50);
      await Bun.sleep(550);
    }
    // All expired: one more insert drops every one of them, and an invalidated uuid read again is served.
    expect((await cache.get(devices[0]!.uuid))?.uuid).toBe(devices[0]!.uuid);
    expect(cache.size).toBe(1);
    expect(cache.fresh(devices[0]!.uuid)?.row?.uuid).toBe(devices[0]!.uuid);
  } finally {
    await store.close();
  }
});

test("DeviceCache: a device read again after an invalidate keeps its new entry when its old one expires", async () => {
  const store = await SqliteStore.open(":memory:");
  try {
    const [a, b] = await Promise.all([1, 2].map(() => store.putDevice(aDevice())));
    const cache = new DeviceCache(store, { ttlMs: 500 });
    await cache.get(a!.uuid);
    await Bun.sleep(300);
    cache.invalidate(a!.uuid); // re-registered, say: its first entry is left behind in the expiry order
    await cache.get(a!.uuid);
    await Bun.sleep(250); // the first entry has expired, the second has not
    await cache.get(b!.uuid); // this insert drops what expired: not a's new entry
    expect(cache.fresh(a!.uuid)?.row?.uuid).toBe(a!.uuid);
    expect(cache.size).toBe(2);
  } finally {
    await store.close();
  }
});

test("DeviceCache: a row lives its TTL however the wall clock steps, so another replica's revocation shows within it", async () => {
  const store = await SqliteStore.open(":memory:");
  try {
    const d = await store.putDevice(aDevice());
    const cache = new DeviceCache(store, { ttlMs: 300 });
    await cache.get(d.uuid);
    setSystemTime(new Date(Date.now() - 3_600_000)); // NTP steps this replica's clock back an hour
    await store.revokeDevice(d.uuid, new Date().toISOString()); // through another replica
    await Bun.sleep(350);
    expect(cache.fresh(d.uuid)).toBeUndefined();
    expect((await cache.get(d.uuid))?.revokedAt).not.toBeNull();
    setSystemTime(new Date(Date.now() + 7_200_000)); // and forward an hour past the real time: the row just read stays
    expect(cache.fresh(d.uuid)?.row?.uuid).toBe(d.uuid);
  } finally {
    setSystemTime();
    await store.close();
  }
});

test("DeviceCache: the misses of one event-loop turn are one store read, each device once, and then served from the cache", async () => {
  const store = await SqliteStore.open(":memory:");
  try {
    const devices = await Promise.all([1, 2, 3, 4].map(() => store.putDevice(aDevice())));
    const reads: string[][] = [];
    const getDevices = store.getDevices.bind(store);
    store.getDevices = (uuids) => (reads.push([...uuids]), getDevices(uuids));
    store.getDevice = () => Promise.reject(new Error("the cache reads devices one turn at a time, not one by one"));
    const cache = new DeviceCache(store, { ttlMs: 60_000 });
    const asked = [...devices.map((d) => d.uuid), devices[0]!.uuid, "unknown-device"];
    const rows = await Promise.all(asked.map((u) => cache.get(u)));
    expect(rows.map((r) => r?.uuid)).toEqual([...devices.map((d) => d.uuid), devices[0]!.uuid, undefined]);
    expect(reads).toEqual([[...devices.map((d) => d.uuid), "unknown-device"]]);
    // Read in the next turn: its own read. Then every one of them is fresh, the unknown one too.
    await Bun.sleep(0);
    expect((await cache.get(devices[1]!.uuid))?.uuid).toBe(devices[1]!.uuid);
    expect(reads).toHaveLength(1);
    for (const u of asked) expect(cache.fresh(u)).toBeDefined();
  } finally {
    await store.close();
  }
});

test("DeviceCache: a row read while its device is invalidated answers the requests that asked, and is not kept", async () => {
  const store = await SqliteStore.open(":memory:");
  try {
    const [a, b] = await Promise.all([1, 2].map(() => store.putDevice(aDevice())));
    // A store whose answer comes late (PostgreSQL's round trip), holding the row as it was.
    const release = Promise.withResolvers<void>();
    const getDevices = store.getDevices.bind(store);
    store.getDevices = async (uuids) => {
      const rows = await getDevices(uuids);
      await release.promise;
      return rows;
    };
    const cache = new DeviceCache(store, { ttlMs: 60_000 });
    const asked = [cache.get(a!.uuid), cache.get(b!.uuid)];
    await Bun.sleep(10); // the read is under way
    await store.revokeDevice(a!.uuid, new Date().toISOString());
    cache.invalidate(a!.uuid); // a revocation through this replica, while the read is out
    release.resolve();
    const [rowA, rowB] = (await Promise.all(asked)) as [DeviceRow, DeviceRow];
    expect(rowA.revokedAt).toBeNull(); // as read, for the requests made before the revocation
    expect(rowB.uuid).toBe(b!.uuid);
    expect(cache.fresh(a!.uuid)).toBeUndefined(); // not kept: the next request reads it again
    expect(cache.fresh(b!.uuid)?.row?.uuid).toBe(b!.uuid);
    expect((await cache.get(a!.uuid))?.revokedAt).not.toBeNull();
  } finally {
    await store.close();
  }
});

test("DeviceCache: a failed read fails each request that waited for it, and the next turn reads again", async () => {
  const store = await SqliteStore.open(":memory:");
  try {
    const d = await store.putDevice(aDevice());
    const getDevices = store.getDevices.bind(store);
    store.getDevices = () => Promise.reject(new Error("database unreachable"));
    const cache = new DeviceCache(store);
    const asked = await Promise.allSettled([cache.get(d.uuid), cache.get(d.uuid)]);
    expect(asked.map((r) => r.status === "rejected" && String(r.reason))).toEqual(["Error: database unreachable", "Error: database unreachable"]);
    expect(cache.fresh(d.uuid)).toBeUndefined();
    store.getDevices = getDevices;
    expect((await cache.get(d.uuid))?.uuid).toBe(d.uuid);
  } finally {
    await store.close();
  }
});
