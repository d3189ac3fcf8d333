/**
 * Small things a user of the dashboard sees, over HTTPS against a real gateway (pages read as
 * HTML): an address the dashboard has no page for answers with a dashboard page saying so; a
 * page names its own (empty) icon, so a browser asks for no /favicon.ico, which is a 404; a
 * rollout's page does not read "State State" (a heading and the row below it); revoking a token
 * asks about that token by its name, as revoking a device does, and its row names it alike; one
 * device is "1 device"; adding a device to a group says what it did, once (its sealed cookie
 * opens under its own name only), and a device's page names the groups it is in (looked up when
 * it loads, not at each refresh).
 */
import { describe, expect, test } from "bun:test";
import { registerDevice } from "../gateway/_register.ts";
import { gatewayForTests } from "./_gateway.ts";
import { dashboardClient, unescapeHtml } from "./_http.ts";
import { TokensPage } from "../../gateway/ui/pages/tokens.tsx";

const env = gatewayForTests();

const signedIn = async () => {
  const b = dashboardClient(env.g);
  expect((await b.signIn(env.g.adminToken)).status).toBe(303);
  return b;
};

describe("the dashboard", () => {
  test("answers an address it has no page for with a page of its own saying so, not JSON", async () => {
    const b = await signedIn();
    const res = await b.request("/ui/nope");
    expect(res.status).toBe(404);
    expect(res.html).toStartWith("<!DOCTYPE html><html");
    expect(res.html).toContain("<h1>Page not found</h1>");
    expect(res.html).toContain("The dashboard has no page at /ui/nope.");
    expect(res.html).toContain('<nav aria-label="Main">');
    // Signed out, it is the sign-in page first, as for any page.
    const out = await dashboardClient(env.g).request("/ui/nope");
    expect(out).toMatchObject({ status: 303, location: "/ui/login" });
  }, 60_000);

  test("pages name their icon, empty and in the page, so a browser asks the gateway for none (/favicon.ico is a 404)", async () => {
    const b = await signedIn();
    for (const path of ["/ui/", "/ui/devices", "/ui/tokens", "/ui/nope"]) expect((await b.request(path)).html).toContain('<link rel="icon" href="data:,"/>');
    expect((await dashboardClient(env.g).request("/ui/login")).html).toContain('<link rel="icon" href="data:,"/>');
    expect((await dashboardClient(env.g).request("/favicon.ico")).status).toBe(404);
  }, 60_000);

  test("a rollout's page names its card of details otherwise than the State row in it", async () => {
    await registerDevice(env.g.url, env.g.adminToken, env.g.caPem);
    const res = await env.g.adminFetch("/admin/rollouts", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ target: "9", tag: "main", waves: [100] }) });
    expect(res.status).toBe(201);
    const { id } = (await res.json()) as { id: string };
    const html = (await (await signedIn()).request(`/ui/rollouts/${id}`)).html;
    const card = /<section class="card" aria-labelledby="([^"]+)"><h2 id="\1">([^<]*)<\/h2><dl class="kv"><dt>([^<]*)<\/dt>/.exec(html);
    expect(card?.slice(2)).toEqual(["Details", "State"]);
  }, 60_000);

  test("counts one device as 1 device, not 1 devices", async () => {
    const d = await registerDevice(env.g.url, env.g.adminToken, env.g.caPem, ["solo"]);
    const post = (body: unknown) => env.g.adminFetch("/admin/groups", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    expect((await post({ name: "one", devices: [d.uuid] })).status).toBe(201);
    expect((await post({ name: "solo", query: "tag=solo" })).status).toBe(201);
    const b = await signedIn();
    expect((await b.request("/ui/groups/one")).html).toContain("Static: 1 device. ");
    expect((await b.request("/ui/groups/solo")).html).toContain("</code>, evaluated now: 1 device.");
    expect((await b.request("/ui/devices?tag=solo")).html).toContain("1–1 of 1 device <span");
  }, 60_000);

  test("says what adding a device to a group did, once, and a device's page names the groups it is in", async () => {
    const d = await registerDevice(env.g.url, env.g.adminToken, env.g.caPem, ["kiosk-line"]);
    const post = (body: unknown) => env.g.adminFetch("/admin/groups", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    expect((await post({ name: "pilot" })).status).toBe(201);
    expect((await post({ name: "kiosks", query: "tag=kiosk-line" })).status).toBe(201);
    const b = await signedIn();
    const page = async () => {
      const html = (await b.request(`/ui/devices/${d.uuid}`)).html;
      const text = (re: RegExp) => unescapeHtml((re.exec(html)?.[1] ?? "").replace(/<[^>]+>/g, ""));
      return { groups: text(/<dd data-groups[^>]*>(.*?)<\/dd>/s), said: text(/<p class="msg" role="status">(.*?)<\/p>/s), csrf: b.csrfOf(html) };
    };
    const before = await page();
    expect(before).toMatchObject({ groups: "kiosks (dynamic)", said: "" });
    const add = () => b.request(`/ui/devices/${d.uuid}/group`, { method: "POST", body: new URLSearchParams({ _csrf: before.csrf, group: "pilot" }) });
    expect((await add()).status).toBe(303);
    expect(await page()).toMatchObject({ groups: "kiosks (dynamic), pilot", said: "Added to group pilot." });
    // Said once: the page again says nothing.
    expect(await page()).toMatchObject({ groups: "kiosks (dynamic), pilot", said: "" });
    expect((await add()).status).toBe(303);
    expect((await page()).said).toBe("Already in group pilot: nothing changed.");
    // The groups stand outside the region the page refreshes every 5 s, which looks them up no more.
    const full = (await b.request(`/ui/devices/${d.uuid}`)).html;
    expect(full.indexOf("<dd data-groups")).toBeGreaterThan(-1);
    expect(full.indexOf("<dd data-groups")).toBeLessThan(full.indexOf('<div id="device" data-live'));
    const live = (await b.request(`/ui/devices/${d.uuid}`, { headers: { "x-ui-live": "1" } })).html;
    expect(live).toContain('<div id="device" data-live');
    expect(live).not.toContain("data-groups");
  }, 60_000);

  test("a device's page looks its groups up in one request however many groups there are", async () => {
    const d = await registerDevice(env.g.url, env.g.adminToken, env.g.caPem, ["many-groups"]);
    const other = await registerDevice(env.g.url, env.g.adminToken, env.g.caPem, ["elsewhere"]);
    const post = (body: unknown) => env.g.adminFetch("/admin/groups", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    for (let i = 0; i < 4; i++) expect((await post({ name: `mg-static-${i}`, devices: [i % 2 ? d.uuid : other.uuid] })).status).toBe(201);
    for (let i = 0; i < 4; i++) expect((await post({ name: `mg-dynamic-${i}`, query: i % 2 ? "tag=many-groups" : "tag=elsewhere" })).status).toBe(201);
    /** Requests the gateway has answered 200 on a route, from its /metrics (the dashboard's own calls to the API count). */
    const answered = async (route: string) => {
      const text = await (await env.g.adminFetch("/metrics")).text();
      const m = new RegExp(`^gateway_requests_total\\{route="${route.replace(/[/:]/g, (c) => `\\${c}`)}",status="200"\\} (\\d+)$`, "m").exec(text);
      return m ? Number(m[1]) : 0;
    };
    const b = await signedIn();
    const before = { fleet: await answered("/admin/fleet/devices"), groups: await answered("/admin/devices/:uuid/groups") };
    const html = (await b.request(`/ui/devices/${d.uuid}`)).html;
    const groups = unescapeHtml((/<dd data-groups[^>]*>(.*?)<\/dd>/s.exec(html)?.[1] ?? "").replace(/<[^>]+>/g, ""));
    expect(groups.split(", ").filter((g) => g.startsWith("mg-"))).toEqual(["mg-dynamic-1 (dynamic)", "mg-dynamic-3 (dynamic)", "mg-static-1", "mg-static-3"]);
    // The device's status is one read of the fleet list; its groups one request, not one a group.
    expect({ fleet: (await answered("/admin/fleet/devices")) - before.fleet, groups: (await answered("/admin/devices/:uuid/groups")) - before.groups }).toEqual({ fleet: 1, groups: 1 });
  }, 60_000);

  test("opens a notice's sealed cookie under its own name only, and deletes a notice cookie that does not open", async () => {
    const d = await registerDevice(env.g.url, env.g.adminToken, env.g.caPem);
    expect((await env.g.adminFetch("/admin/groups", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name: "line-2" }) })).status).toBe(201);
    const b = await signedIn();
    const csrf = b.csrfOf((await b.request(`/ui/devices/${d.uuid}`)).html);
    expect((await b.request(`/ui/devices/${d.uuid}/group`, { method: "POST", body: new URLSearchParams({ _csrf: csrf, group: "line-2" }) })).status).toBe(303);
    // The group notice's sealed value, moved into the token notice's cookie: no token shown, the cookie gone.
    b.jar.set("ota_ui_created", b.jar.get("ota_ui_grouped")!);
    const tokens = await b.request("/ui/tokens");
    expect(tokens.status).toBe(200);
    expect(tokens.html).not.toContain("New registration token");
    expect(b.jar.get("ota_ui_created")).toBe("");
    for (const cookie of ["garbage", b.jar.get("__Host-ota_ui")!]) {
      b.jar.set("ota_ui_created", cookie);
      expect((await b.request("/ui/tokens")).html).not.toContain("New registration token");
      expect(b.jar.get("ota_ui_created")).toBe("");
    }
    // Under its own name it opens, once.
    expect(unescapeHtml((await b.request(`/ui/devices/${d.uuid}`)).html)).toContain("Added to group line-2.");
  }, 60_000);

  test("asks before revoking a token naming it, and what revoking it stops", async () => {
    const create = async (body: unknown) =>
      ((await (await env.g.adminFetch("/admin/tokens", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })).json()) as { id: string });
    const line = await create({ name: "line 3" });
    const unnamed = await create({});
    const desk = await create({ role: "viewer", name: "support desk" });
    const html = (await (await signedIn()).request("/ui/tokens")).html;
    const confirmOf = (id: string) => unescapeHtml(new RegExp(`action="/ui/tokens/${id}/revoke" data-confirm="([^"]*)"`).exec(html)?.[1] ?? "");
    expect(confirmOf(line.id)).toBe('Revoke registration token "line 3"? No device can register with it any more.');
    expect(confirmOf(unnamed.id)).toBe(`Revoke registration token ${unnamed.id.slice(0, 8)}? No device can register with it any more.`);
    expect(confirmOf(desk.id)).toBe('Revoke viewer token "support desk"? Whatever uses it, a dashboard session too, is refused from now on.');
  }, 60_000);

  test("names a token without a name, or with an empty one (the API takes none, an older gateway's store may hold one), by its id's start, in its row as in its question", async () => {
    const token = (id: string, name: string | null) => ({
      id, name, tags: [], hwid: null, createdAt: "2026-12-01T00:00:00Z", expiresAt: "2027-12-01T00:00:00Z", uses: 0, maxUses: 1, allowDeviceTags: false, revokedAt: null, expired: false,
    });
    const list = { tokens: [token("0123456789abcdef", ""), token("fedcba9876543210", null)], apiTokens: [] };
    const html = String(await TokensPage({ list, csrf: "x", canWrite: true, publicUrl: "https://gw" }));
    for (const id of ["0123456789abcdef", "fedcba9876543210"]) {
      expect(html).toContain(`<tr data-token="${id}"><td><span class="muted">${id.slice(0, 8)}</span></td>`);
      expect(html).toContain(`data-confirm="Revoke registration token ${id.slice(0, 8)}? `);
    }
  });
});
