/**
 * Small things a user of the dashboard sees, over HTTPS against a real gateway (pages read as
 * HTML): an address the dashboard has no page for answers with a dashboard page saying so; a
 * page names its own (empty) icon, so a browser asks for no /favicon.ico, which is a 404; a
 * rollout's page does not read "State State" (a heading and the row below it).
 */
import { describe, expect, test } from "bun:test";
import { registerDevice } from "../gateway/_register.ts";
import { gatewayForTests } from "./_gateway.ts";
import { dashboardClient } from "./_http.ts";

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
    expect(res.html).toStartWith("<html");
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
});
