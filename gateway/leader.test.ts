import { describe, expect, test } from "bun:test";
import { LeaderLease } from "./leader.ts";
import { SqliteStore } from "./store/sqlite.ts";

describe("LeaderLease", () => {
  test("one of two replicas leads, and a clean stop hands the lease over at once", async () => {
    const store = SqliteStore.open(":memory:");
    const a = await new LeaderLease(store, "signer", { ttlMs: 3000 }).start();
    const b = await new LeaderLease(store, "signer", { ttlMs: 3000, renewMs: 50 }).start();
    expect([a.isLeader, b.isLeader]).toEqual([true, false]);
    await a.stop();
    await Bun.sleep(150);
    expect(b.isLeader).toBe(true);
    await b.stop();
    await store.close();
  });

  test("a holder whose renewal does not answer within the lease's life stops acting as leader", async () => {
    const store = SqliteStore.open(":memory:");
    const renew = store.tryLease.bind(store);
    let hang = false;
    store.tryLease = (name, holder, ttl) => (hang ? new Promise<boolean>(() => {}) : renew(name, holder, ttl));
    const lease = await new LeaderLease(store, "signer", { ttlMs: 300, renewMs: 100 }).start();
    expect(lease.isLeader).toBe(true);
    hang = true; // the database stops answering: the lease may expire there and another replica take it
    await Bun.sleep(450);
    expect(lease.isLeader).toBe(false);
    hang = false;
    await Bun.sleep(250);
    expect(lease.isLeader).toBe(true);
    await store.close();
  });
});
