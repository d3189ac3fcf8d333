/**
 * The fleet dashboard in a real browser (Debian's chromium driven by playwright-core, nothing
 * downloaded) against a real gateway: sign in, see the registered devices and the failed
 * update's timeline, filter the list, create a token, revoke a device, sign out; an action
 * without the CSRF token is refused; a viewer cannot revoke. Screenshots of each page at
 * desktop and phone width land in the test's temp dir (printed), for a reviewer to look at.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { type Browser, type Page } from "playwright-core";
import { goto, launchChromium, signIn, submit } from "./_browser.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { tempDir } from "../harness/tmp.ts";
import { FETCH_ERROR, makeFleet, register, type Fleet } from "./_fleet.ts";
import { SESSION_COOKIE_SECONDS } from "../../gateway/ui/session.ts";

let gw: GatewayHandle;
let fleet: Fleet;
let browser: Browser;
let shots: string;
let viewerToken: string;

const VIEWPORTS = { desktop: { width: 1280, height: 900 }, phone: { width: 390, height: 844 } } as const;

beforeAll(async () => {
  gw = await startGateway();
  fleet = await makeFleet(gw);
  const res = await gw.adminFetch("/admin/tokens", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ role: "viewer", name: "support desk" }),
  });
  expect(res.status).toBe(201);
  viewerToken = ((await res.json()) as { token: string }).token;
  // UI_SCREENSHOTS=<dir> keeps them (e.g. to refresh docs/img/); by default they go with the temp dir.
  shots = process.env.UI_SCREENSHOTS ?? (await tempDir("ui-screenshots-"));
  mkdirSync(shots, { recursive: true });
  browser = await launchChromium();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await gw?.stop();
  if (shots) console.error(`dashboard screenshots: ${shots}`);
});

const signedIn = (token: string, viewport: { width: number; height: number } = VIEWPORTS.desktop) => signIn(browser, gw.url, token, viewport);

const shot = (page: Page, name: string) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });

describe("dashboard at /ui/", () => {
  test("an admin signs in with a session cookie that is HttpOnly, Secure, SameSite=Strict and expires", async () => {
    const { ctx, page } = await signedIn(gw.adminToken);
    const [cookie] = await ctx.cookies();
    expect(cookie).toMatchObject({ httpOnly: true, secure: true, sameSite: "Strict" });
    expect(cookie!.expires).toBeGreaterThan(Date.now() / 1000);
    // The browser keeps it a day past the 8-hour session, so a user coming back is told it ran out; no longer.
    expect(cookie!.expires).toBeLessThan(Date.now() / 1000 + SESSION_COOKIE_SECONDS + 60);
    // The cookie carries the token encrypted, never in clear.
    expect(cookie!.value).not.toContain(gw.adminToken);
    await expect(page.locator("[data-status-count=failed]").textContent()).resolves.toBe("1");
    await expect(page.locator("[data-status-count=up-to-date]").textContent()).resolves.toBe("1");
    await expect(page.getByText(FETCH_ERROR).first().isVisible()).resolves.toBe(true);
    await shot(page, "overview-desktop");
    await ctx.close();
  }, 60_000);

  test("every page is laid out in standards mode (it starts with a doctype), not quirks mode", async () => {
    const { ctx, page } = await signedIn(gw.adminToken);
    for (const path of ["/ui/", "/ui/devices", `/ui/devices/${fleet.bad.uuid}`, "/ui/groups", "/ui/targets", "/ui/rollouts", "/ui/tokens"]) {
      await goto(page, `${gw.url}${path}`);
      expect([path, await page.evaluate(() => (globalThis as any).document.compatMode as string)]).toEqual([path, "CSS1Compat"]);
    }
    await ctx.close();
    const out = await browser.newContext({ ignoreHTTPSErrors: true });
    const login = await out.newPage();
    await goto(login, `${gw.url}/ui/login`);
    expect(await login.evaluate(() => (globalThis as any).document.compatMode as string)).toBe("CSS1Compat");
    await out.close();
  }, 60_000);

  test("the overview's charts draw each bar at its value, clear of the axis labels", async () => {
    const { ctx, page } = await signedIn(gw.adminToken);
    // Each column and bar as drawn (its box in the SVG's units) next to the height it was given.
    const bars = (chart: string) =>
      page.locator(`section[aria-labelledby=${chart}] svg rect.bar`).evaluateAll((rects) =>
        rects.map((r: any) => ({ given: Number(r.getAttribute("height")), drawn: Math.round(r.getBBox().height * 100) / 100, bottom: r.getBoundingClientRect().bottom })),
      );
    const columns = await bars("h-checkins");
    expect(columns).toHaveLength(30);
    // The two devices' check-ins of a moment ago (in one minute, or two if it turned): the minutes before none.
    expect(columns.filter((c) => c.given > 0).length).toBeOneOf([1, 2]);
    expect(columns.filter((c) => c.given === 0).length).toBeGreaterThan(25);
    for (const c of columns) expect(c.drawn).toBe(c.given);
    const labelsTop = await page.locator("section[aria-labelledby=h-checkins] svg text").evaluateAll((ts) => Math.min(...ts.map((t: any) => t.getBoundingClientRect().top)));
    for (const c of columns) expect(c.bottom).toBeLessThanOrEqual(labelsTop);
    const versions = await bars("h-versions");
    expect(versions.length).toBeGreaterThan(0);
    for (const v of versions) expect(v.drawn).toBe(v.given);
    await ctx.close();
  }, 60_000);

  test("the device list shows the registered devices and filters by name, status and target", async () => {
    const { ctx, page } = await signedIn(gw.adminToken);
    await page.getByRole("link", { name: "Devices" }).click();
    await page.waitForURL(`${gw.url}/ui/devices`);
    for (const name of ["kiosk-good", "kiosk-bad", "spare-1"]) await expect(page.getByRole("link", { name }).count()).resolves.toBe(1);
    await shot(page, "devices-desktop");

    await page.getByLabel("Name or uuid").fill("kiosk");
    await page.getByRole("button", { name: "Filter" }).click();
    await page.waitForURL(/q=kiosk/);
    await expect(page.locator("tbody tr[data-uuid]").count()).resolves.toBe(2);

    await page.getByLabel("Status").selectOption("failed");
    await page.getByRole("button", { name: "Filter" }).click();
    await page.waitForURL(/status=failed/);
    await expect(page.locator("tbody tr[data-uuid]").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-uuid")))).resolves.toEqual([fleet.bad.uuid]);

    await goto(page, `${gw.url}/ui/devices?target=amd64-linux-2`);
    await expect(page.locator("tbody tr[data-uuid]").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-uuid")))).resolves.toEqual([fleet.good.uuid]);
    await ctx.close();
  }, 60_000);

  test("a device's page shows its update timeline: each step, bytes fetched, the failure's error text", async () => {
    const { ctx, page } = await signedIn(gw.adminToken);
    await goto(page, `${gw.url}/ui/devices?q=kiosk`);
    await page.getByRole("link", { name: "kiosk-bad" }).click();
    await page.waitForURL(`${gw.url}/ui/devices/${fleet.bad.uuid}`);
    const steps = await page.locator("ol.timeline li").evaluateAll((li) => li.map((l) => l.querySelector("strong")!.textContent));
    expect(steps).toEqual(["Download started", "Download failed"]);
    await expect(page.locator("ol.timeline pre.error").textContent()).resolves.toBe(FETCH_ERROR);
    await shot(page, "device-failed-desktop");

    await goto(page, `${gw.url}/ui/devices/${fleet.good.uuid}`);
    const good = await page.locator("ol.timeline li strong").allTextContents();
    expect(good).toEqual(["Download started", "Download completed", "Installation started", "Installation applied", "Installation completed"]);
    await expect(page.getByText("Fetched 5.0 MiB").isVisible()).resolves.toBe(true);
    await expect(page.locator("[data-current-target]").textContent()).resolves.toBe("amd64-linux-2");
    await expect(page.getByText("web: running (healthy)").isVisible()).resolves.toBe(true);
    await page.getByText("Network").click();
    await expect(page.getByText("10.0.0.9").isVisible()).resolves.toBe(true);
    await shot(page, "device-desktop");
    await ctx.close();
  }, 60_000);

  test("an admin creates a registration token: shown once with the fioup register command, then listed", async () => {
    const { ctx, page } = await signedIn(gw.adminToken);
    await page.getByRole("link", { name: "Tokens" }).click();
    await page.getByLabel("Name").fill("line 3");
    await page.getByLabel("Devices it may register").fill("25");
    await page.getByRole("button", { name: "Create registration token" }).click();
    const token = (await page.locator("#new-token").textContent())!.trim();
    expect(token.length).toBeGreaterThan(20);
    await expect(page.locator("#register-command").textContent()).resolves.toBe(`fioup register --server ${gw.url} --token ${token}`);
    await shot(page, "tokens-created-desktop");
    // The token works: a device registers with it.
    const list = (await (await gw.adminFetch("/admin/tokens")).json()) as { tokens: { name: string; maxUses: number }[] };
    expect(list.tokens.find((t) => t.name === "line 3")?.maxUses).toBe(25);
    // And is not shown again.
    await page.reload();
    await expect(page.locator("#new-token").count()).resolves.toBe(0);
    await expect(page.getByRole("cell", { name: "line 3" }).count()).resolves.toBe(1);
    await ctx.close();
  }, 60_000);

  test("an action without the CSRF token is refused and changes nothing", async () => {
    const { ctx, page } = await signedIn(gw.adminToken);
    const res = await page.request.post(`${gw.url}/ui/devices/${fleet.spare.uuid}/revoke`, { form: { nothing: "here" } });
    expect(res.status()).toBe(403);
    const wrong = await page.request.post(`${gw.url}/ui/devices/${fleet.spare.uuid}/revoke`, { form: { _csrf: "forged" } });
    expect(wrong.status()).toBe(403);
    const d = (await (await gw.adminFetch(`/admin/devices/${fleet.spare.uuid}`)).json()) as { revokedAt: string | null };
    expect(d.revokedAt).toBeNull();
    await ctx.close();
  }, 60_000);

  test("a viewer sees the fleet but cannot revoke: no button, the API refuses the POST; revoking the token ends the session", async () => {
    const { ctx, page } = await signedIn(viewerToken);
    await goto(page, `${gw.url}/ui/devices/${fleet.spare.uuid}`);
    await expect(page.getByRole("button", { name: "Revoke device" }).count()).resolves.toBe(0);
    // Forge the action with the viewer's own valid CSRF token: the admin API itself says no.
    const csrf = await page.locator("input[name=_csrf]").first().getAttribute("value");
    const res = await page.request.post(`${gw.url}/ui/devices/${fleet.spare.uuid}/revoke`, { form: { _csrf: csrf! } });
    expect(res.status()).toBe(403);
    expect(await res.text()).toContain("viewer token may not POST");
    const d = (await (await gw.adminFetch(`/admin/devices/${fleet.spare.uuid}`)).json()) as { revokedAt: string | null };
    expect(d.revokedAt).toBeNull();
    await goto(page, `${gw.url}/ui/tokens`);
    await expect(page.getByRole("button", { name: "Create registration token" }).count()).resolves.toBe(0);
    await shot(page, "tokens-viewer-desktop");

    // Revoking the token ends the session that carries it, at the next page.
    const list = (await (await gw.adminFetch("/admin/tokens")).json()) as { apiTokens: { id: string; role: string }[] };
    const id = list.apiTokens.find((t) => t.role === "viewer")!.id;
    expect((await gw.adminFetch(`/admin/tokens/${id}/revoke`, { method: "POST" })).status).toBe(200);
    await goto(page, `${gw.url}/ui/devices`);
    expect(page.url()).toEndWith("/ui/login");
    await ctx.close();
  }, 60_000);

  test("an admin sets a device's tags and revokes it from its page, then signs out", async () => {
    const { ctx, page } = await signedIn(gw.adminToken);
    await goto(page, `${gw.url}/ui/devices/${fleet.spare.uuid}`);
    // Its token gives it tags: the gateway decides them, and the page says what a change does.
    await expect(page.getByText("The device follows these from its next check-in.").count()).resolves.toBe(1);
    // One whose token lets it choose: what is set here lasts until its next check-in, and the page says so.
    const res = await gw.adminFetch("/admin/tokens", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name: "own tags", maxUses: 1, allowDeviceTags: true }) });
    const chooser = await register(gw, ((await res.json()) as { token: string }).token, "chooser-1");
    await goto(page, `${gw.url}/ui/devices/${chooser.uuid}`);
    await expect(page.getByText("This device chooses its own tags").count()).resolves.toBe(1);
    await goto(page, `${gw.url}/ui/devices/${fleet.spare.uuid}`);
    await page.getByLabel("Tags (comma-separated)").fill("lab, spare");
    await submit(page, "Set tags");
    expect(page.url()).toBe(`${gw.url}/ui/devices/${fleet.spare.uuid}`);
    const tagged = (await (await gw.adminFetch(`/admin/devices/${fleet.spare.uuid}`)).json()) as { tags: string[] };
    expect(tagged.tags).toEqual(["lab", "spare"]);
    await submit(page, "Revoke device");
    expect(page.url()).toBe(`${gw.url}/ui/devices/${fleet.spare.uuid}`);
    await expect(page.locator(".badge").first().textContent()).resolves.toBe("revoked");
    const d = (await (await gw.adminFetch(`/admin/devices/${fleet.spare.uuid}`)).json()) as { revokedAt: string | null };
    expect(d.revokedAt).not.toBeNull();
    // The revoked device's certificate no longer works.
    expect((await fleet.spare.fetch(`${gw.url}/repo/timestamp.json`)).status).toBe(403);
    // The overview's versions leave it out, and say so beside the total that counts it.
    await goto(page, `${gw.url}/ui/`);
    await expect(page.locator("section[aria-labelledby=h-versions] p.muted").textContent()).resolves.toBe("Revoked devices (1) are not counted here: they run nothing this gateway serves.");

    await submit(page, "Sign out");
    expect(page.url()).toBe(`${gw.url}/ui/login`);
    await goto(page, `${gw.url}/ui/devices`);
    expect(page.url()).toEndWith("/ui/login");
    await ctx.close();
  }, 60_000);

  test("pages refresh their data without a reload", async () => {
    const { ctx, page } = await signedIn(gw.adminToken);
    await goto(page, `${gw.url}/ui/devices/${fleet.good.uuid}`);
    const before = await page.locator("ol.timeline li").count();
    const res = await fleet.good.fetch(`${gw.url}/events`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify([{ id: `live-${Date.now()}`, deviceTime: new Date().toISOString(), eventType: { id: "EcuDownloadStarted", version: 2 }, event: { correlationId: "upd-3", targetName: "amd64-linux-3", version: "3" } }]),
    });
    expect(res.ok).toBe(true);
    await page.waitForFunction((n) => (globalThis as any).document.querySelectorAll("ol.timeline li").length > n, before, { timeout: 15_000 });
    await ctx.close();
  }, 60_000);

  test("every page renders at phone width without horizontal scrolling of the page", async () => {
    const { ctx, page } = await signedIn(gw.adminToken, VIEWPORTS.phone);
    for (const [name, path] of [
      ["overview", "/ui/"],
      ["devices", "/ui/devices"],
      ["device", `/ui/devices/${fleet.bad.uuid}`],
      ["targets", "/ui/targets"],
      ["tokens", "/ui/tokens"],
    ] as const) {
      await goto(page, `${gw.url}${path}`);
      const overflow = await page.evaluate(() => {
        const root = (globalThis as any).document.documentElement; // runs in the page
        return root.scrollWidth - root.clientWidth;
      });
      expect(overflow).toBeLessThanOrEqual(1);
      await shot(page, `${name}-phone`);
    }
    await page.emulateMedia({ colorScheme: "dark" });
    await goto(page, `${gw.url}/ui/`);
    await shot(page, "overview-phone-dark");
    const { ctx: desk, page: dp } = await signedIn(gw.adminToken);
    for (const [name, path] of [["targets", "/ui/targets"], ["tokens", "/ui/tokens"]] as const) {
      await goto(dp, `${gw.url}${path}`);
      await shot(dp, `${name}-desktop`);
    }
    await goto(dp, `${gw.url}/ui/targets`);
    // amd64-linux-2 runs on kiosk-good; amd64-linux-1 on kiosk-bad.
    await expect(dp.locator("tr[data-target=amd64-linux-2] td").last().textContent()).resolves.toBe("1");
    await expect(dp.locator("tr[data-target=amd64-linux-1] td").nth(2).textContent()).resolves.toContain("shop");
    await dp.emulateMedia({ colorScheme: "dark" });
    await goto(dp, `${gw.url}/ui/devices/${fleet.bad.uuid}`);
    await shot(dp, "device-failed-desktop-dark");
    await desk.close();
    await ctx.close();
  }, 90_000);
});
