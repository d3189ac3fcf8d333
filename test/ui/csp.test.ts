/**
 * The dashboard's Content-Security-Policy lets each page run its own style sheet and script and
 * nothing else, as docs/dashboard.md says: a script put into a page (as an injection would) does
 * not run, while every page loads without a violation and its script works (refresh, copy,
 * confirmation). It used to allow any inline script ('unsafe-inline').
 */
import { beforeAll, describe, expect, test } from "bun:test";
import type { Page } from "playwright-core";
import { gatewayAndBrowser, goto, signIn, submit } from "./_browser.ts";
import { makeFleet, type Fleet } from "./_fleet.ts";

const env = gatewayAndBrowser();
let fleet: Fleet;
let rollout: string;

beforeAll(async () => {
  fleet = await makeFleet(env.g);
  const post = (path: string, body: unknown) =>
    env.g.adminFetch(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  await post("/admin/groups", { name: "pilot", devices: [fleet.good.uuid] });
  rollout = ((await (await post("/admin/rollouts", { target: "3", tag: "main", waves: [50, 100], soak: "1h" })).json()) as { id: string }).id;
}, 120_000);

/** What the browser says it refused for the page's policy. */
function violations(page: Page): string[] {
  const seen: string[] = [];
  page.on("console", (m) => {
    if (/Content Security Policy/i.test(m.text())) seen.push(`${page.url()}: ${m.text()}`);
  });
  return seen;
}

describe("the dashboard's Content-Security-Policy", () => {
  test("runs a script put into a page by no means, inline or as an attribute", async () => {
    const { ctx, page } = await signIn(env.browser, env.g.url, env.g.adminToken);
    const res = await goto(page, `${env.g.url}/ui/devices`);
    const directive = (name: string) => new RegExp(`(?:^|; )${name} ([^;]*)`).exec(res?.headers()["content-security-policy"] ?? "")?.[1];
    expect(directive("script-src")).toMatch(/^'sha256-[A-Za-z0-9+/=]+'$/);
    expect(directive("style-src")).toMatch(/^'sha256-[A-Za-z0-9+/=]+'$/);
    const ran = await page.evaluate(async () => {
      const w = globalThis as any;
      const s = w.document.createElement("script");
      s.textContent = "window.injected = 'script'";
      w.document.body.append(s);
      const img = w.document.createElement("img");
      img.setAttribute("onerror", "window.injected = 'attribute'");
      img.src = "data:,";
      w.document.body.append(img);
      await new Promise((r) => setTimeout(r, 300));
      return w.injected ?? "nothing";
    });
    expect(ran).toBe("nothing");
    await ctx.close();
  }, 60_000);

  test("lets every page load without a violation, and its own script work", async () => {
    const { ctx, page } = await signIn(env.browser, env.g.url, env.g.adminToken);
    const seen = violations(page);
    for (const path of [
      "/ui/",
      "/ui/devices",
      `/ui/devices/${fleet.bad.uuid}`,
      "/ui/targets",
      "/ui/rollouts",
      `/ui/rollouts/${rollout}`,
      "/ui/groups",
      "/ui/groups/pilot",
      "/ui/tokens",
    ]) {
      await goto(page, `${env.g.url}${path}`);
      // The style sheet applies: the header is laid out as a row.
      expect(await page.locator("header").evaluate((h) => (globalThis as any).getComputedStyle(h).display)).toBe("flex");
    }
    // The script: a page refreshes itself, a confirmation is asked (signIn accepts it), a copy button answers.
    await goto(page, `${env.g.url}/ui/devices`);
    await page.waitForFunction(() => (globalThis as any).document.body.dataset.refreshed, undefined, { timeout: 15_000 });
    let asked = "";
    page.once("dialog", (d) => void (asked = d.message()));
    await goto(page, `${env.g.url}/ui/rollouts/${rollout}`);
    await submit(page, "Cancel");
    expect(asked).toContain("Cancel this rollout?");
    await goto(page, `${env.g.url}/ui/tokens`);
    await submit(page, "Create registration token");
    await page.getByRole("button", { name: "Copy token" }).click();
    expect(await page.getByRole("button", { name: "Copied" }).count()).toBe(1);
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.waitForURL(`${env.g.url}/ui/login`);
    expect(seen).toEqual([]);
    await ctx.close();
  }, 90_000);
});
