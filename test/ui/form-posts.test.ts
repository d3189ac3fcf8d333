/**
 * What the dashboard's form routes take: a form, as a browser posts it. A script posting JSON with
 * the right CSRF header (`{"tags":"main,extra"}` to set a device's tags) is refused with 415 and
 * nothing changes (it used to be read as an empty form: 303, the tags gone), on every route that
 * changes something; so is a form without the field a route changes. A POST from another origin,
 * the gateway's own host and port over plain http among them, is refused with 403.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { DeviceDetail, GroupDetail, RolloutDetail, TokenList } from "../../lib/api/admin.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { makeFleet, type Fleet } from "./_fleet.ts";
import { dashboardClient } from "./_http.ts";

let g: GatewayHandle;
let fleet: Fleet;

const admin = async <T,>(path: string, method = "GET", body?: unknown): Promise<T> => {
  const res = await g.adminFetch(path, { method, headers: body === undefined ? {} : { "content-type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
};

beforeAll(async () => {
  g = await startGateway();
  fleet = await makeFleet(g);
}, 120_000);

afterAll(async () => {
  await g?.stop();
}, 120_000);

describe("a dashboard POST", () => {
  test("whose body is JSON, not a form, is refused with 415 on every route that changes something, and changes nothing", async () => {
    const uuid = fleet.good.uuid;
    await admin(`/admin/devices/${uuid}/labels`, "PUT", { set: { site: "berlin" } });
    await admin("/admin/groups", "POST", { name: "pilot", devices: [fleet.spare.uuid] });
    const rollout = await admin<RolloutDetail>("/admin/rollouts", "POST", { target: "3", tag: "main", waves: [100], soak: "1h" });
    const token = await admin<{ id: string }>("/admin/tokens", "POST", { name: "line 1", maxUses: 5 });
    const before = {
      device: await admin<DeviceDetail>(`/admin/devices/${uuid}`),
      pilot: await admin<GroupDetail>("/admin/groups/pilot"),
      tokens: await admin<TokenList>("/admin/tokens"),
    };
    expect(before.device.tags).toEqual(["main"]);

    const b = dashboardClient(g);
    expect((await b.signIn(g.adminToken)).status).toBe(303);
    const csrf = b.csrfOf((await b.request(`/ui/devices/${uuid}`)).html);
    const json = (path: string, body: unknown) =>
      b.request(path, { method: "POST", headers: { "content-type": "application/json", "x-csrf-token": csrf }, body: JSON.stringify(body) });

    const posts: [string, unknown][] = [
      [`/ui/devices/${uuid}/tags`, { tags: "main,extra" }],
      [`/ui/devices/${uuid}/labels`, { labels: "ring=canary" }],
      [`/ui/devices/${uuid}/group`, { group: "pilot" }],
      ["/ui/groups", { name: "other" }],
      ["/ui/groups/pilot/remove", { uuid: fleet.spare.uuid }],
      [`/ui/rollouts/${rollout.id}/pause`, {}],
      ["/ui/tokens", { name: "from json" }],
      [`/ui/tokens/${token.id}/revoke`, {}],
      [`/ui/devices/${uuid}/revoke`, {}],
    ];
    for (const [path, body] of posts) {
      const res = await json(path, body);
      expect({ path, status: res.status }).toEqual({ path, status: 415 });
      expect(res.html).toContain("nothing was changed");
    }
    // Text is no form either.
    const text = await b.request(`/ui/devices/${uuid}/tags`, { method: "POST", headers: { "content-type": "text/plain", "x-csrf-token": csrf }, body: "tags=main,extra" });
    expect(text.status).toBe(415);

    expect(await admin<DeviceDetail>(`/admin/devices/${uuid}`)).toEqual(before.device);
    expect(await admin<GroupDetail>("/admin/groups/pilot")).toEqual(before.pilot);
    expect((await admin<{ groups: unknown[] }>("/admin/groups")).groups).toHaveLength(1);
    expect((await admin<RolloutDetail>(`/admin/rollouts/${rollout.id}`)).state).toBe("running");
    expect(await admin<TokenList>("/admin/tokens")).toEqual(before.tokens);
  }, 60_000);

  test("a form without the field a route changes is refused with 400 and changes nothing; an action with only the CSRF header still works", async () => {
    const uuid = fleet.bad.uuid;
    await admin(`/admin/devices/${uuid}/labels`, "PUT", { set: { site: "paris" } });
    const b = dashboardClient(g);
    expect((await b.signIn(g.adminToken)).status).toBe(303);
    const csrf = b.csrfOf((await b.request(`/ui/devices/${uuid}`)).html);
    for (const route of ["tags", "labels", "group"]) {
      const res = await b.request(`/ui/devices/${uuid}/${route}`, { method: "POST", body: new URLSearchParams({ _csrf: csrf }) });
      expect({ route, status: res.status }).toEqual({ route, status: 400 });
      expect(res.html).toContain(`The form has no &quot;${route}&quot; field: nothing was changed`);
    }
    const d = await admin<DeviceDetail>(`/admin/devices/${uuid}`);
    expect(d.tags).toEqual(["main"]);
    expect(d.labels).toEqual({ site: "paris" });

    // An empty field is a choice: the tags are cleared.
    expect((await b.request(`/ui/devices/${uuid}/tags`, { method: "POST", body: new URLSearchParams({ _csrf: csrf, tags: "" }) })).status).toBe(303);
    expect((await admin<DeviceDetail>(`/admin/devices/${uuid}`)).tags).toEqual([]);

    // No body at all, the CSRF token in its header: the action is done.
    const out = await b.request("/ui/logout", { method: "POST", headers: { "x-csrf-token": csrf } });
    expect(out.status).toBe(303);
  }, 60_000);

  test("from another origin is refused with 403: another site, the gateway's own host and port over plain http, or null", async () => {
    const uuid = fleet.spare.uuid;
    const b = dashboardClient(g);
    expect((await b.signIn(g.adminToken)).status).toBe(303);
    const csrf = b.csrfOf((await b.request(`/ui/devices/${uuid}`)).html);
    const from = (origin: string) =>
      b.request(`/ui/devices/${uuid}/tags`, { method: "POST", headers: { origin }, body: new URLSearchParams({ _csrf: csrf, tags: "from-elsewhere" }) });
    for (const origin of ["https://evil.example", `http://${g.host}`, `https://${g.host.replace(/:\d+$/, "")}:1`, "null"]) {
      const res = await from(origin);
      expect({ origin, status: res.status }).toEqual({ origin, status: 403 });
    }
    expect((await admin<DeviceDetail>(`/admin/devices/${uuid}`)).tags).toEqual(["main"]);
    // The gateway's own origin, as the browser sends it with its form.
    expect((await from(g.url)).status).toBe(303);
    expect((await admin<DeviceDetail>(`/admin/devices/${uuid}`)).tags).toEqual(["from-elsewhere"]);
  }, 60_000);
});
