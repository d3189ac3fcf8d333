/**
 * A session that ends while its page is open in a browser tab: its token revoked (as `gateway
 * tokens revoke` does) while the tab refreshes itself every 5 s. The tab goes to the sign-in page,
 * which says why ("this token was revoked at <time>"), instead of carrying on with stale data; the
 * refresh must not follow the redirect itself, which also used up the one-time reason.
 */
import { describe, expect, test } from "bun:test";
import type { TokenCreated } from "../../lib/api/admin.ts";
import { gatewayAndBrowser, goto, signIn } from "./_browser.ts";

const env = gatewayAndBrowser();

describe("a session that ends in an open tab", () => {
  test("takes the tab to the sign-in page, which says the token was revoked", async () => {
    const { g, browser } = env;
    const res = await g.adminFetch("/admin/tokens", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ role: "admin", name: "laptop" }) });
    expect(res.status).toBe(201);
    const token = (await res.json()) as TokenCreated;
    const { ctx, page } = await signIn(browser, g.url, token.token);
    await goto(page, `${g.url}/ui/devices`);
    await page.waitForFunction(() => (globalThis as any).document.body.dataset.refreshed, undefined, { timeout: 15_000 });

    expect((await g.adminFetch(`/admin/tokens/${token.id}/revoke`, { method: "POST" })).status).toBe(200);
    // The next refresh (every 5 s) finds the session ended.
    await page.waitForURL(`${g.url}/ui/login`, { timeout: 15_000 });
    await expect(page.getByRole("alert").textContent()).resolves.toMatch(/^Your session ended: this token was revoked at \S+\. Sign in with a current token\.$/);
    await ctx.close();
  }, 60_000);
});
