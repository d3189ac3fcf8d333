/**
 * A device registered by a fioup before 2026-12-06 with a --tag its token overrode follows that tag
 * while the gateway records the token's. It says which at every check-in (x-ats-tags), and the
 * gateway keeps that: the dashboard's list by tag, GET /admin/fleet/devices?tag= and `gateway
 * devices list` find and show it ("main (follows canary)"), while its tags stay the token's; the
 * list by tag counts it apart, as a rollout by the tag does not reach it.
 */
import { expect, test } from "bun:test";
import type { FleetDeviceList, TokenCreated } from "../../lib/api/admin.ts";
import type { RegistrationResponse } from "../../lib/api/index.ts";
import { post, tlsFetch } from "./_client.ts";
import { makeDeviceCsr } from "./_device.ts";
import { gatewayRun } from "../harness/cli.ts";
import { gatewayForTests } from "../ui/_gateway.ts";
import { dashboardClient, unescapeHtml } from "../ui/_http.ts";

const env = gatewayForTests();

/** The device list's count line, as text. */
const countLine = (html: string) => /<p class="muted" data-total="\d+">(.*?)<span title/s.exec(html)![1]!.replace(/<[^>]+>/g, "").trim();

test("a device that follows a tag its token overrode is listed by that tag, its tags and the one it follows shown", async () => {
  const g = env.g;
  const res = await g.adminFetch("/admin/tokens", { ...post({ name: "fleet", maxUses: 5, tags: ["main"] }) });
  expect(res.status).toBe(201);
  const { token } = (await res.json()) as TokenCreated;
  // As an older fioup registers with --tag canary: the token's tags win on the gateway.
  const k = await makeDeviceCsr();
  const reg = await tlsFetch({ ca: g.caPem })(`${g.url}/devices`, {
    ...post({ name: "old-fioup", uuid: k.uuid, csr: k.csrPem, "hardware-id": "amd64-linux", tags: ["canary"] }),
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
  });
  expect(reg.status).toBe(201);
  const body = (await reg.json()) as RegistrationResponse;
  const device = tlsFetch({ ca: body.ca, cert: body.certificate, key: k.keyPem });
  // ...and goes on following canary, saying so at each check-in.
  const check = await device(`${g.url}/repo/timestamp.json`, { headers: { "x-ats-tags": "canary" } });
  expect(check.headers.get("x-device-tags")).toBe("main");

  const cli = gatewayRun(["devices", "list", "--data", g.dataDir]); // flushes the check-in
  expect(cli.code).toBe(0);
  expect(cli.out.split("\n").find((l) => l.startsWith(k.uuid))).toContain(" main (follows canary) ");
  const show = gatewayRun(["devices", "show", k.uuid, "--data", g.dataDir]);
  expect(show.out).toContain("tags:        main (follows canary)\n");
  // The JSON says it too, as devices list's does.
  const json = gatewayRun(["devices", "show", k.uuid, "--data", g.dataDir, "--format", "json"]);
  expect(JSON.parse(json.out)).toMatchObject({ tags: ["main"], reportedTags: ["canary"] });

  const fleet = (await (await g.adminFetch("/admin/fleet/devices?tag=canary")).json()) as FleetDeviceList;
  expect(fleet.devices.map((d) => [d.uuid, d.tags, d.reportedTags])).toEqual([[k.uuid, ["main"], ["canary"]]]);
  // Listed by canary only for following it: counted apart, as a rollout by tag canary does not reach it.
  expect(fleet).toMatchObject({ total: 1, revoked: 0, reportedOnly: 1 });
  expect((await (await g.adminFetch("/admin/fleet/devices?tag=main")).json()) as FleetDeviceList).toMatchObject({ total: 1, reportedOnly: 0 });
  const rollout = await g.adminFetch("/admin/rollouts", { ...post({ target: "1", tag: "canary", waves: [100] }) });
  expect(rollout.status).toBe(400);
  expect(((await rollout.json()) as { error: string }).error).toBe('No devices in tag "canary": nothing to roll out to');

  const b = dashboardClient(g);
  expect((await b.signIn(g.adminToken)).status).toBe(303);
  const list = unescapeHtml((await b.request("/ui/devices?tag=canary")).html);
  expect(list).toContain(k.uuid);
  expect(list).toContain("main (follows canary)");
  // What the list counts is what a rollout by the tag would reach: none.
  expect(countLine(list)).toBe("1–1 of 1 device, 1 only following canary, not carrying it (no rollout by tag canary reaches it): 0 without them");
  expect(countLine(unescapeHtml((await b.request("/ui/devices?tag=main")).html))).toBe("1–1 of 1 device");
  expect(unescapeHtml((await b.request(`/ui/devices/${k.uuid}`)).html)).toContain("<dd>main (follows canary)</dd>");
}, 60_000);
