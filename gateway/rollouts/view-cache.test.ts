import { afterAll, expect, test } from "bun:test";
import type { RolloutRow } from "../../lib/api/admin.ts";
import { SqliteStore } from "../store/sqlite.ts";
import { RolloutViews } from "./view-cache.ts";

const store = SqliteStore.open(":memory:");
afterAll(() => store.close());

const at = new Date().toISOString();
const rollout = (id: string, targetVersion: string, over: Partial<RolloutRow> = {}): RolloutRow => ({
  id, targetVersion, groupName: null, tag: "main", waves: [1, 10, 100], soakS: 60, maxFailuresPct: 5, healthWindowS: 60, pendingTimeoutS: 600,
  installWindow: null, maxHoldS: null, rollbackOnHalt: false, state: "running", wave: 0, waveStartedAt: at, reason: null, acknowledgedFailures: 0,
  revision: 1, createdAt: at, updatedAt: at, ...over,
});
const uuid = (i: number) => `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`;

test("views over 20,000 members: released waves annotated, the rest hidden, one shared object per kind of view, cheap per lookup", async () => {
  const N = 20_000;
  await store.createRollout(rollout("r1", "7", { installWindow: "Sat 02:00-04:00 Europe/Berlin", maxHoldS: 3600 }), Array.from({ length: N }, (_, i) => ({ uuid: uuid(i), wave: i < 200 ? 0 : i < 2000 ? 1 : 2 })));
  await store.createRollout(rollout("r2", "8"), [{ uuid: uuid(5), wave: 0 }]);
  const views = await new RolloutViews(store, { pollMs: 0 }).start();

  expect(views.rolloutView(uuid(5))).toEqual({ key: "r1:a,r2:a", hideVersions: [], annotate: { "7": { rollout: "r1", window: "Sat 02:00-04:00 Europe/Berlin", maxHold: 3600 }, "8": { rollout: "r2" } } });
  expect(views.rolloutView(uuid(1500))).toEqual({ key: "r1:h,r2:h", hideVersions: ["7", "8"], annotate: {} });
  expect(views.rolloutView("someone-else")).toBe(views.rolloutView(uuid(1500))); // memoised: no allocation per check-in
  expect(views.rolloutView(uuid(10))).toEqual({ key: "r1:a,r2:h", hideVersions: ["8"], annotate: { "7": expect.objectContaining({ rollout: "r1" }) } });

  const asked = Array.from({ length: N }, (_, i) => uuid(i));
  const t0 = performance.now();
  let annotated = 0;
  for (let k = 0; k < 300_000; k++) if (views.rolloutView(asked[k % N]!).hideVersions.length < 2) annotated++;
  const perLookupUs = ((performance.now() - t0) * 1000) / 300_000;
  console.error(`rolloutView: ${perLookupUs.toFixed(3)} µs per lookup (2 active rollouts, 20,000 members)`);
  expect(annotated).toBe(15 * 200);
  expect(perLookupUs).toBeLessThan(50); // a check-in costs hundreds of µs: this stays a small part of it even on a loaded machine

  // A transition elsewhere (another replica): refresh() sees the new revision, members are not read again.
  await store.updateRollout("r1", 1, { wave: 1 });
  expect(views.rolloutView(uuid(1500)).key).toBe("r1:h,r2:h"); // not yet refreshed
  await views.refresh();
  expect(views.rolloutView(uuid(1500)).key).toBe("r1:a,r2:h");
  await store.updateRollout("r2", 1, { state: "completed" });
  await views.refresh();
  expect(views.rolloutView(uuid(15_000))).toEqual({ key: "r1:h", hideVersions: ["7"], annotate: {} });
  await store.updateRollout("r1", 2, { state: "cancelled" });
  await Promise.all([views.refresh(), views.refresh(), views.refresh()]); // concurrent calls share loads
  // Cancelling does not release the version to the devices outside the released waves.
  expect(views.rolloutView(uuid(15_000))).toEqual({ key: "r1:h", hideVersions: ["7"], annotate: {} });
});

test("a halted or cancelled rollout withholds its released members that have not succeeded: pending ones and failed ones (an offline device that timed out would install the version when it came back)", async () => {
  await store.createRollout(rollout("h1", "9", { waves: [100] }), [0, 1, 2, 3].map((i) => ({ uuid: uuid(100 + i), wave: 0 })));
  await store.updateRolloutDevices("h1", [
    { uuid: uuid(100), status: "succeeded" },
    { uuid: uuid(101), status: "failed", reason: "timeout: the update did not complete in time" },
    { uuid: uuid(102), status: "failed", reason: 'app "shop" is unhealthy' },
  ]); // uuid(103) stays pending
  const views = await new RolloutViews(store, { pollMs: 0 }).start();
  const sees = (i: number) => !views.rolloutView(uuid(100 + i)).hideVersions.includes("9");
  expect([0, 1, 2, 3].map(sees)).toEqual([true, true, true, true]); // running: the whole released wave sees it
  await store.updateRollout("h1", 1, { state: "halted", reason: "halted at 50% failures" });
  await views.refresh();
  expect([0, 1, 2, 3].map(sees)).toEqual([true, false, false, false]);
  await store.updateRollout("h1", 2, { state: "cancelled" });
  await views.refresh();
  expect([0, 1, 2, 3].map(sees)).toEqual([true, false, false, false]);
});

test("a cancelled rollout goes on gating its version behind more than 1,000 newer rollouts", async () => {
  const old = new Date(Date.now() - 3_600_000).toISOString();
  await store.createRollout(rollout("old-cancelled", "42", { waves: [100], createdAt: old }), [{ uuid: uuid(200), wave: 0 }]);
  await store.updateRollout("old-cancelled", 1, { state: "cancelled" });
  for (let i = 0; i < 1001; i++) {
    const id = `later-${String(i).padStart(4, "0")}`;
    await store.createRollout(rollout(id, `later-${i}`, { waves: [100] }), [{ uuid: uuid(200), wave: 0 }]);
    await store.updateRollout(id, 1, { state: "completed" });
  }
  const views = await new RolloutViews(store, { pollMs: 0 }).start();
  // Device 201 was never released: version 42 stays hidden from it.
  expect(views.rolloutView(uuid(201)).hideVersions).toContain("42");
});
