/**
 * A device's labels are capped at MAX_DEVICE_LABELS (lib/api/admin.ts), the same number the
 * request schema allows: `gateway devices label` refuses more before sending (exit 2), and the
 * gateway refuses a change that would take a device past it (exit 3), so the dashboard's form,
 * which sends all of a device's labels in one request, can always save them.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { MAX_DEVICE_LABELS } from "../../lib/api/admin.ts";
import { registerDevice } from "./_register.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { gatewayRun } from "../harness/cli.ts";

let g: GatewayHandle;

const cli = (...args: string[]) => gatewayRun(args);

beforeAll(async () => {
  g = await startGateway();
}, 120_000);

afterAll(async () => {
  await g?.stop();
}, 120_000);

const labels = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}${i}=v`);
const labelsOf = async (uuid: string) => ((await (await g.adminFetch(`/admin/devices/${uuid}`)).json()) as { labels: Record<string, string> }).labels;

describe("the label cap", () => {
  test("more labels than a device may have is bad usage, exit 2, before anything is sent", async () => {
    const d = await registerDevice(g.url, g.adminToken, g.caPem);
    const many = cli("devices", "label", "--data", g.dataDir, d.uuid, ...labels("k", 2000));
    expect(many.code).toBe(2);
    expect(many.err).toContain(`2000 labels given: a device has at most ${MAX_DEVICE_LABELS}`);
    // Checked before the gateway is asked: a data dir that leads nowhere does not matter.
    const offline = cli("devices", "label", "--server", "https://127.0.0.1:1", "--token", "x.y", d.uuid, ...labels("k", MAX_DEVICE_LABELS + 1));
    expect(offline.code).toBe(2);
    expect(await labelsOf(d.uuid)).toEqual({});
  }, 60_000);

  test("two calls that would take a device past the cap: the second is refused (exit 3) and changes nothing", async () => {
    const d = await registerDevice(g.url, g.adminToken, g.caPem);
    expect(cli("devices", "label", "--data", g.dataDir, d.uuid, ...labels("a", 60)).code).toBe(0);
    const more = cli("devices", "label", "--data", g.dataDir, d.uuid, ...labels("b", 60));
    expect(more.code).toBe(3);
    expect(more.err).toContain(`would have 120 labels: at most ${MAX_DEVICE_LABELS} a device (it has 60; remove some first)`);
    expect(Object.keys(await labelsOf(d.uuid))).toHaveLength(60);
    // Up to the cap, and replacing labels at it, still works.
    expect(cli("devices", "label", "--data", g.dataDir, d.uuid, ...labels("b", MAX_DEVICE_LABELS - 60)).code).toBe(0);
    expect(cli("devices", "label", "--data", g.dataDir, d.uuid, "a0=w", "--remove", "a1").code).toBe(0);
    expect(Object.keys(await labelsOf(d.uuid))).toHaveLength(MAX_DEVICE_LABELS - 1);
  }, 60_000);
});
