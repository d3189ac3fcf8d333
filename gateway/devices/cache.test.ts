import { expect, setSystemTime, test } from "bun:test";
import { aDevice } from "../store/_contract.ts";
import { SqliteStore } from "../store/sqlite.ts";
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
