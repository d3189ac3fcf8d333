/**
 * The Tokens page says what `gateway tokens list` says of a registration token whose uses are all
 * spent: "used up", without a Revoke button; one with a use left is active and can be revoked.
 * Signing in with a registration token names the tokens that can sign in: admin or viewer.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { TokenCreated } from "../../lib/api/admin.ts";
import { registerDevice } from "../gateway/_register.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { dashboardClient } from "./_http.ts";

let g: GatewayHandle;

beforeAll(async () => {
  g = await startGateway();
}, 120_000);

afterAll(async () => {
  await g?.stop();
}, 120_000);

const createToken = async (maxUses: number): Promise<TokenCreated> => {
  const res = await g.adminFetch("/admin/tokens", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ maxUses }) });
  expect(res.status).toBe(201);
  return (await res.json()) as TokenCreated;
};

describe("the Tokens page", () => {
  test("shows a registration token whose uses are all spent as used up, with no Revoke", async () => {
    const spent = await createToken(1);
    const left = await createToken(2);
    await registerDevice(g.url, spent.token, g.caPem);
    await registerDevice(g.url, left.token, g.caPem);
    const b = dashboardClient(g);
    expect((await b.signIn(g.adminToken)).status).toBe(303);
    const page = await b.request("/ui/tokens");
    expect(page.status).toBe(200);
    const row = (id: string) => new RegExp(`<tr data-token="${id}">.*?</tr>`, "s").exec(page.html)?.[0] ?? "";
    expect(row(spent.id)).toContain(">used up</span>");
    expect(row(spent.id)).toContain("1 / 1");
    expect(row(spent.id)).not.toContain("/revoke");
    expect(row(left.id)).toContain(">active</span>");
    expect(row(left.id)).toContain(`action="/ui/tokens/${left.id}/revoke"`);
  }, 60_000);
});

describe("signing in", () => {
  test("with a registration token names the tokens that sign in, admin or viewer, never publish", async () => {
    const reg = await createToken(1);
    const r = await dashboardClient(g).signIn(reg.token);
    expect(r.status).toBe(401);
    const alert = /<p class="msg error" role="alert">(.*?)<\/p>/s.exec(r.html)![1]!;
    expect(alert).toBe(
      "That token cannot sign in: it only registers devices; an API token is made with `gateway tokens create --role admin` (or viewer); it needs an unrevoked, unexpired admin or viewer token.",
    );
    expect(alert).not.toContain("publish");
    // The admin API keeps naming every API role, as all of them may call it.
    const api = await fetch(`${g.url}/admin/whoami`, { headers: { authorization: `Bearer ${reg.token}` }, tls: { ca: g.caPem } } as RequestInit);
    expect(api.status).toBe(403);
    expect(await api.text()).toContain("an API token is made with `gateway tokens create --role publish` (or admin, or viewer)");
  }, 60_000);
});
