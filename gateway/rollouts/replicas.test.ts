/**
 * Two gateway replicas on one PostgreSQL database: only the signer-lease holder moves a rollout
 * on (no transition is made twice), devices served by the other replica get their new views, and
 * when the lease holder is killed (SIGKILL) mid-rollout the other replica takes over and finishes it.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { RolloutDetail } from "../../lib/api/admin.ts";
import { startGateway, startReplica, type GatewayHandle } from "../../test/harness/gateway.ts";
import { startPostgres, type PostgresHandle } from "../../test/harness/postgres.ts";
import { SimFleet } from "../../test/harness/sim-devices.ts";
import { adminJson, targetEntry } from "../../test/rollouts/_fixtures.ts";

let pg: PostgresHandle;
let a: GatewayHandle;
let b: GatewayHandle;
const args = ["--rollout-tick", "0.2"];

beforeAll(async () => {
  pg = await startPostgres();
  const db = await pg.createDatabase("rollout_replicas");
  a = await startGateway({ db, args });
  b = await startReplica(a, { db, args });
});
afterAll(async () => {
  await a?.stop();
  await b?.stop();
  await pg?.stop();
});

test("only the lease holder moves the rollout; after it is SIGKILLed the other replica carries the rollout to completion", async () => {
  const fleet = await SimFleet.register(b, { count: 20, initialTarget: "hw-1", pullManifests: false });
  await adminJson(b, "/admin/targets", { targets: { "hw-1": targetEntry("1", b.host) } });
  const created = await adminJson<RolloutDetail>(b, "/admin/rollouts", { target: "2", tag: "main", waves: [10, 50, 100], soak: "1s", healthWindow: "1s" });
  await adminJson(b, "/admin/targets", { targets: { "hw-2": targetEntry("2", b.host) } });

  const waveOf = new Map((await adminJson<RolloutDetail>(b, `/admin/rollouts/${created.id}`)).counts.map((c) => [c.wave, c.devices]));
  expect([...waveOf.values()]).toEqual([2, 8, 10]);
  let killed = false;
  let r = created;
  const end = Date.now() + 90_000;
  while (r.state !== "completed") {
    if (Date.now() > end) throw new Error(`Rollout did not complete: ${JSON.stringify(r).slice(0, 600)}`);
    await fleet.cycle(); // every device checks in through replica b
    // Nobody outside the released waves has been offered version 2.
    const offered = fleet.devices.filter((d) => d.seen.has("hw-2")).length;
    r = await adminJson<RolloutDetail>(b, `/admin/rollouts/${created.id}`);
    expect(offered).toBeLessThanOrEqual(r.counts.filter((c) => c.wave <= r.wave).reduce((n, c) => n + c.devices, 0));
    if (!killed && r.wave === 1) {
      // The replica that started first holds the signer lease: it made the transition, b did not.
      const advanced = async (gw: GatewayHandle) => /gateway_rollout_transitions_total\{kind="wave-advanced"\} (\d+)/.exec(await (await gw.adminFetch("/metrics")).text())?.[1] ?? "0";
      expect(await advanced(a)).toBe("1");
      expect(await advanced(b)).toBe("0");
      await a.kill();
      killed = true;
    }
    await Bun.sleep(300);
  }
  expect(killed).toBe(true);
  expect(fleet.devices.every((d) => d.current === "hw-2")).toBe(true);
  const kinds = r.events.filter((e) => e.deviceUuid === null).map((e) => `${e.kind}@${e.wave}`).reverse();
  expect(kinds).toEqual(["created@null", "wave-started@0", "wave-advanced@0", "wave-started@1", "wave-advanced@1", "wave-started@2", "completed@2"]);
}, 150_000);
