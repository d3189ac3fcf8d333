import { describe, expect, test } from "bun:test";
import { LeaderLease } from "./leader.ts";
import { SqliteStore } from "./store/sqlite.ts";
import { until } from "../test/harness/tmp.ts";

describe("LeaderLease", () => {
  test("one of two replicas leads, and a clean stop hands the lease over at once", async () => {
    const store = SqliteStore.open(":memory:");
    const a = await new LeaderLease(store, "signer", { ttlMs: 3000 }).start();
    const b = await new LeaderLease(store, "signer", { ttlMs: 3000, renewMs: 50 }).start();
    expect([a.isLeader, b.isLeader]).toEqual([true, false]);
    // b must not take the lease while a holds it. Nothing can be polled for what must not happen, so a
    // fixed wait: 300 ms is six of b's 50 ms tries (fewer on a loaded machine: that weakens the check,
    // never fails it falsely) and a tenth of a's 3 s lease (a renews every 1 s), so a still holds it.
    await Bun.sleep(300);
    expect([a.isLeader, b.isLeader]).toEqual([true, false]);
    const stopped = performance.now();
    await a.stop();
    // b tries every 50 ms: it takes the released lease at its next try (polled: a loaded machine delays
    // timers), well before a's unreleased lease would have expired (3 s).
    await until("b to take the lease a released", () => b.isLeader, (v) => v, 5000);
    expect(performance.now() - stopped).toBeLessThan(2000);
    await b.stop();
    await store.close();
  });

  test("a holder that steps down hands the lease over and seeks it again only after its pause", async () => {
    const store = SqliteStore.open(":memory:");
    const a = await new LeaderLease(store, "signer", { ttlMs: 3000, renewMs: 50 }).start();
    const b = await new LeaderLease(store, "signer", { ttlMs: 3000, renewMs: 50 }).start();
    expect([a.isLeader, b.isLeader]).toEqual([true, false]);
    await a.stepDown(3000); // longer than b needs to take it, even on a loaded machine
    expect([a.isLeader, a.steppedDown]).toEqual([false, true]);
    await until("b to take the lease a gave up", () => b.isLeader, (v) => v, 5000);
    await b.stop(); // the lease is free, but a's pause has not ended: a does not take it
    expect(a.isLeader).toBe(false);
    await until("a to take it again after its pause", () => a.isLeader, (v) => v, 8000);
    expect(a.steppedDown).toBe(false);
    await a.stop();
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
    // No wait for a timer here: isLeader compares the clock with the last answered renewal's send time
    // plus the lease's life, so 450 ms after the hang began (more than the 300 ms life) it is false; a
    // loaded machine only sleeps longer, which keeps it false.
    await Bun.sleep(450);
    expect(lease.isLeader).toBe(false);
    hang = false;
    await until("the lease renewed once the database answers again", () => lease.isLeader, (v) => v, 5000);
    await store.close();
  });
});
