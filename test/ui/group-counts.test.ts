/**
 * A group's page and the device list it links to count the same devices: a revoked device is in no
 * group (docs/rollouts.md), and the list, which shows revoked devices as revoked, says how many of
 * those it lists are revoked and how many are left without them: the group's count. The same for a
 * tag, the other audience of a rollout. (The list said "of 3 devices" where the group said 2.) It
 * counts them in the same read as its page.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { makeFleet, type Fleet } from "./_fleet.ts";
import { dashboardClient } from "./_http.ts";

let g: GatewayHandle;
let fleet: Fleet;

const admin = async (path: string, body?: unknown) => {
  const res = await g.adminFetch(path, { method: "POST", headers: body === undefined ? {} : { "content-type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!res.ok) throw new Error(`POST ${path}: ${res.status} ${await res.text()}`);
};

beforeAll(async () => {
  g = await startGateway();
  fleet = await makeFleet(g); // three devices, tag main
  await admin("/admin/groups", { name: "mains", query: "tag=main" });
  await admin("/admin/groups", { name: "pilot", devices: [fleet.good.uuid, fleet.spare.uuid] });
  await admin(`/admin/devices/${fleet.spare.uuid}/revoke`);
}, 120_000);

afterAll(async () => {
  await g?.stop();
}, 120_000);

/** The device list's count line, as text. */
const countLine = (html: string) => /<p class="muted" data-total="\d+">(.*?)<span title/s.exec(html)![1]!.replace(/<[^>]+>/g, "").trim();

describe("a group's count and the device list of the group", () => {
  test("agree: the list says how many of the devices it shows are revoked, and how many are left, the group's count", async () => {
    const b = dashboardClient(g);
    expect((await b.signIn(g.adminToken)).status).toBe(303);
    for (const [name, inGroup, listed] of [
      ["mains", 2, 3],
      ["pilot", 1, 2],
    ] as const) {
      const group = await b.request(`/ui/groups/${name}`);
      expect(group.status).toBe(200);
      expect(Number(/(\d+) devices?\./.exec(group.html)?.[1])).toBe(inGroup);
      const list = await b.request(`/ui/devices?group=${name}`);
      expect(list.status).toBe(200);
      expect(countLine(list.html)).toBe(`1–${listed} of ${listed} devices, 1 of them revoked (in no group, no rollout): ${inGroup} without them`);
      expect(list.html).toContain(`href="/ui/devices?group=${name}&amp;status=revoked"`);
    }
    // A tag is a rollout's audience too.
    expect(countLine((await b.request("/ui/devices?tag=main")).html)).toBe("1–3 of 3 devices, 1 of them revoked (in no group, no rollout): 2 without them");
    // Counted in the one read of the list: a refresh of a group's list asks the API once.
    const reads = async () => Number(/^gateway_requests_total\{route="\/admin\/fleet\/devices",status="200"\} (\d+)$/m.exec(await (await g.adminFetch("/metrics")).text())?.[1] ?? 0);
    const before = await reads();
    expect(countLine((await b.request("/ui/devices?group=mains", { headers: { "x-ui-live": "1" } })).html)).toContain("1 of them revoked");
    expect((await reads()) - before).toBe(1);
    // With a status chosen, or without a group or tag, the list is as it was.
    expect(countLine((await b.request("/ui/devices?group=mains&status=revoked")).html)).toBe("1–1 of 1 device");
    expect(countLine((await b.request("/ui/devices")).html)).toBe("1–3 of 3 devices");
  }, 60_000);
});
