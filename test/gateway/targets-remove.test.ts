/** `gateway targets remove`: the operator's way to withdraw a target from what devices are offered. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { resolve } from "node:path";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { run } from "../harness/tmp.ts";
import { targetEntry } from "../tuf/_repo-server.ts";

const MAIN = resolve(import.meta.dir, "../../gateway/main.ts");
let gw: GatewayHandle;
beforeAll(async () => {
  gw = await startGateway();
  const res = await gw.adminFetch("/admin/targets", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ targets: { "amd64-linux-1": targetEntry(1, "amd64-linux"), "amd64-linux-2": targetEntry(2, "amd64-linux"), "amd64-linux-3": targetEntry(3, "amd64-linux") } }),
  });
  expect(res.status).toBe(200);
}, 120_000);
afterAll(() => gw?.stop(), 60_000);

const gateway = (...args: string[]) => run([process.execPath, MAIN, ...args], { allowFail: true });

test("removes the named targets from the signed targets.json, and says what is left", async () => {
  const r = await gateway("targets", "remove", "amd64-linux-1", "amd64-linux-2", "--data", gw.dataDir);
  expect({ code: r.code, err: r.stderr }).toMatchObject({ code: 0, err: "" });
  expect(r.stdout).toMatch(/^removed amd64-linux-1, amd64-linux-2; targets.json is now version \d+ with 1 targets\n$/);
  const list = await gateway("targets", "list", "--data", gw.dataDir, "--format", "json");
  expect(Object.keys((JSON.parse(list.stdout) as { targets: Record<string, unknown> }).targets)).toEqual(["amd64-linux-3"]);
}, 60_000);

test("--format json names the targets removed, as the text does, beside what is left", async () => {
  const res = await gw.adminFetch("/admin/targets", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ targets: { "amd64-linux-7": targetEntry(7, "amd64-linux") } }) });
  expect(res.status).toBe(200);
  const r = await gateway("targets", "remove", "amd64-linux-7", "--data", gw.dataDir, "--format", "json");
  expect({ code: r.code, err: r.stderr }).toMatchObject({ code: 0, err: "" });
  const o = JSON.parse(r.stdout) as { removed: string[]; version: number; targets: Record<string, unknown> };
  expect(o.removed).toEqual(["amd64-linux-7"]);
  expect(Object.keys(o.targets)).not.toContain("amd64-linux-7");
}, 60_000);

test("an unknown target is the gateway's 404, exit 3, and nothing is removed; no name is bad usage", async () => {
  const r = await gateway("targets", "remove", "amd64-linux-9", "--data", gw.dataDir);
  expect(r.code).toBe(3);
  expect(r.stderr).toContain('Target "amd64-linux-9" not found');
  const none = await gateway("targets", "remove", "--data", gw.dataDir);
  expect(none.code).toBe(2);
  expect(none.stderr).toContain("give the name of at least one target (gateway targets list shows them)");
}, 60_000);

test("several names with unknown ones among them: nothing is removed, and every unknown one is named", async () => {
  await gw.adminFetch("/admin/targets", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ targets: { "amd64-linux-4": targetEntry(4, "amd64-linux"), "amd64-linux-5": targetEntry(5, "amd64-linux") } }),
  });
  const before = await gateway("targets", "list", "--data", gw.dataDir, "--format", "json");
  const r = await gateway("targets", "remove", "amd64-linux-4", "nope-1", "amd64-linux-5", "nope-2", "--data", gw.dataDir);
  expect(r.code).toBe(3);
  expect(r.stderr).toContain('Targets "nope-1", "nope-2" not found (gateway targets list shows them); nothing was removed');
  const after = await gateway("targets", "list", "--data", gw.dataDir, "--format", "json");
  expect(JSON.parse(after.stdout)).toEqual(JSON.parse(before.stdout));
  expect(Object.keys((JSON.parse(after.stdout) as { targets: Record<string, unknown> }).targets)).toEqual(expect.arrayContaining(["amd64-linux-4", "amd64-linux-5"]));
}, 60_000);
