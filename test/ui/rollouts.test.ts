/**
 * The dashboard's fleet pages in a real browser against a real gateway: an admin labels a device,
 * makes a static group, adds a device to it, finds devices by label and by group, and watches and
 * steers a rollout (waves as bars with their counts, pause and resume); a viewer sees the rollout
 * without its buttons. Screenshots land in the test's temp dir.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { type Browser, type Page } from "playwright-core";
import { goto, launchChromium, signIn, submit } from "./_browser.ts";
import type { RolloutDetail } from "../../lib/api/admin.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { tempDir } from "../harness/tmp.ts";
import { event, makeFleet, send, type Fleet } from "./_fleet.ts";
import { actionsFor } from "../../gateway/ui/pages/rollouts.tsx";

let gw: GatewayHandle;
let fleet: Fleet;
let browser: Browser;
let shots: string;
let viewerToken: string;
let rolloutId: string;

const admin = async <T,>(path: string, method = "GET", body?: unknown): Promise<T> => {
  const res = await gw.adminFetch(path, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
};

beforeAll(async () => {
  gw = await startGateway({ args: ["--rollout-tick", "0.5"] });
  fleet = await makeFleet(gw);
  viewerToken = (await admin<{ token: string }>("/admin/tokens", "POST", { role: "viewer", name: "viewer" })).token;
  // Version 3 is not published yet: a rollout may come first, so no device sees 3 before its wave.
  const r = await admin<RolloutDetail>("/admin/rollouts", "POST", { target: "3", tag: "main", waves: [33, 100], soak: "1h", first: [fleet.good.uuid] });
  rolloutId = r.id;
  shots = process.env.UI_SCREENSHOTS ?? (await tempDir("ui-rollout-screenshots-"));
  mkdirSync(shots, { recursive: true });
  browser = await launchChromium();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await gw?.stop();
  if (shots) console.error(`rollout screenshots: ${shots}`);
});

const signedIn = (token: string, width = 1280) => signIn(browser, gw.url, token, { width, height: 900 });

const rowUuids = (page: Page) => page.locator("tbody tr[data-uuid]").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-uuid")).sort());
const shot = (page: Page, name: string) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });

describe("dashboard: labels, groups, rollouts", () => {
  test("an admin labels a device, makes a group, adds a device to it, and filters the list by label and by group", async () => {
    const { ctx, page } = await signedIn(gw.adminToken);
    await goto(page, `${gw.url}/ui/devices/${fleet.good.uuid}`);
    await page.getByLabel(/^Labels/).fill("region=eu\nsite=berlin");
    await submit(page, "Set labels");
    expect(page.url()).toBe(`${gw.url}/ui/devices/${fleet.good.uuid}`);
    await expect(page.locator("[data-labels]").textContent()).resolves.toBe("region=eu, site=berlin");
    expect((await admin<{ labels: Record<string, string> }>(`/admin/devices/${fleet.good.uuid}`)).labels).toEqual({ region: "eu", site: "berlin" });

    // Removing a label from the field removes it from the device.
    await page.getByLabel(/^Labels/).fill("region=eu");
    await submit(page, "Set labels");
    expect(page.url()).toBe(`${gw.url}/ui/devices/${fleet.good.uuid}`);
    expect((await admin<{ labels: Record<string, string> }>(`/admin/devices/${fleet.good.uuid}`)).labels).toEqual({ region: "eu" });

    // A label without "=" is refused with the reason, and changes nothing.
    await page.getByLabel(/^Labels/).fill("oops");
    await submit(page, "Set labels");
    await expect(page.getByRole("alert").textContent()).resolves.toContain('"oops" is not key=value');
    expect((await admin<{ labels: Record<string, string> }>(`/admin/devices/${fleet.good.uuid}`)).labels).toEqual({ region: "eu" });

    await goto(page, `${gw.url}/ui/groups`);
    await page.getByLabel("Group name").fill("pilot");
    await submit(page, "Create group");
    expect(page.url()).toBe(`${gw.url}/ui/groups/pilot`);

    await goto(page, `${gw.url}/ui/devices/${fleet.spare.uuid}`);
    await page.getByLabel("Static group").selectOption("pilot");
    await submit(page, "Add to group");
    expect(page.url()).toBe(`${gw.url}/ui/devices/${fleet.spare.uuid}`);
    await goto(page, `${gw.url}/ui/groups/pilot`);
    await expect(page.locator("tr[data-member]").evaluateAll((r) => r.map((x) => x.getAttribute("data-member")))).resolves.toEqual([fleet.spare.uuid]);
    await shot(page, "group-desktop");

    await goto(page, `${gw.url}/ui/devices?label=${encodeURIComponent("region=eu")}`);
    await expect(rowUuids(page)).resolves.toEqual([fleet.good.uuid]);
    await goto(page, `${gw.url}/ui/devices?group=pilot`);
    await expect(rowUuids(page)).resolves.toEqual([fleet.spare.uuid]);
    await ctx.close();
  }, 60_000);

  test("a rollout shows its waves with counts; pause and resume change its state", async () => {
    const { ctx, page } = await signedIn(gw.adminToken);
    await goto(page, `${gw.url}/ui/rollouts`);
    await page.getByRole("link", { name: rolloutId }).click();
    await page.waitForURL(`${gw.url}/ui/rollouts/${rolloutId}`);
    // Three devices with tag main, waves 33% and 100%: kiosk-good (named first) alone in wave 1.
    await expect(page.locator("li[data-wave]").count()).resolves.toBe(2);
    await expect(page.locator("li[data-wave='1'] [data-wave-counts]").textContent()).resolves.toBe("0 succeeded · 0 failed · 1 pending");
    await expect(page.locator("li[data-wave='2'] [data-wave-counts]").textContent()).resolves.toBe("0 succeeded · 0 failed · 2 pending");
    // Version 3 is not published: the released device waits for it, and the page says why.
    await expect(page.locator(`tr[data-waiting='${fleet.good.uuid}']`).textContent()).resolves.toContain("no target of version 3 for amd64-linux yet");
    await shot(page, "rollout-desktop");

    await submit(page, "Pause");
    expect(page.url()).toBe(`${gw.url}/ui/rollouts/${rolloutId}`);
    await expect(page.locator(".badge").first().textContent()).resolves.toBe("paused");
    expect((await admin<RolloutDetail>(`/admin/rollouts/${rolloutId}`)).state).toBe("paused");
    await submit(page, "Resume");
    expect(page.url()).toBe(`${gw.url}/ui/rollouts/${rolloutId}`);
    expect((await admin<RolloutDetail>(`/admin/rollouts/${rolloutId}`)).state).toBe("running");
    await ctx.close();

    const phone = await signedIn(gw.adminToken, 390);
    await goto(phone.page, `${gw.url}/ui/rollouts/${rolloutId}`);
    const overflow = await phone.page.evaluate(() => {
      const root = (globalThis as any).document.documentElement;
      return root.scrollWidth - root.clientWidth;
    });
    expect(overflow).toBeLessThanOrEqual(1);
    await shot(phone.page, "rollout-phone");
    await phone.ctx.close();
  }, 60_000);

  test("the buttons are the actions the rollout allows: no Advance on its last wave, nor on a halted one (resume first)", async () => {
    const buttons = async (page: Page) => (await page.locator("section[aria-labelledby=h-actions] button").allTextContents()).map((t) => t.trim());
    const r = await admin<RolloutDetail>("/admin/rollouts", "POST", { target: "4", tag: "main", waves: [33, 100], soak: "1h" });
    const { ctx, page } = await signedIn(gw.adminToken);
    await goto(page, `${gw.url}/ui/rollouts/${r.id}`);
    expect(await buttons(page)).toEqual(["Pause", "Advance", "Cancel"]);
    await submit(page, "Advance");
    expect((await admin<RolloutDetail>(`/admin/rollouts/${r.id}`)).wave).toBe(1);
    expect(await buttons(page)).toEqual(["Pause", "Cancel"]); // wave 2 of 2: nothing left to advance to
    await submit(page, "Cancel");
    await expect(page.locator("section[aria-labelledby=h-actions]").count()).resolves.toBe(0);
    await ctx.close();
    // A halted rollout (halting takes failing devices; the page's rule is one function): resume or cancel.
    expect(actionsFor({ state: "halted", wave: 0, waves: [33, 100] })).toEqual(["resume", "cancel"]);
  }, 60_000);

  test("Advance clicked twice (the form sent twice) releases one wave; the second is refused, saying the rollout moved on", async () => {
    const r = await admin<RolloutDetail>("/admin/rollouts", "POST", { target: "5", tag: "main", waves: [25, 50, 100], soak: "1h" });
    const { ctx, page } = await signedIn(gw.adminToken);
    await goto(page, `${gw.url}/ui/rollouts/${r.id}`);
    // The page's own form, sent twice from the page (its cookies, its origin), as a double click sends it.
    const [one, two] = await page.evaluate(async () => {
      const form = (globalThis as any).document.querySelector("form[action$='/advance']");
      const send = async () => {
        const res = await fetch(form.action, { method: "POST", body: new (globalThis as any).URLSearchParams(new (globalThis as any).FormData(form)) });
        return { status: res.status, text: await res.text() };
      };
      return [await send(), await send()];
    });
    expect(one.status).toBe(200);
    expect(two.status).toBe(409);
    expect(two.text).toContain("from wave 1: it is at wave 2 by now (advanced meanwhile; nothing was done)");
    expect((await admin<RolloutDetail>(`/admin/rollouts/${r.id}`)).wave).toBe(1);
    await admin(`/admin/rollouts/${r.id}/cancel`, "POST");
    await ctx.close();
  }, 60_000);

  test("the open page follows the rollout: its buttons change when the CLI pauses it, and a device's event names the device", async () => {
    const buttons = async (page: Page) => (await page.locator("section[aria-labelledby=h-actions] button").allTextContents()).map((t) => t.trim());
    const shown = (actions: string[]) => actions.map((a) => a[0]!.toUpperCase() + a.slice(1));
    const r = await admin<RolloutDetail>("/admin/rollouts", "POST", { target: "5", tag: "main", waves: [33, 100], soak: "1h", first: [fleet.spare.uuid] });
    const { ctx, page } = await signedIn(gw.adminToken);
    await goto(page, `${gw.url}/ui/rollouts/${r.id}`);
    expect(await buttons(page)).toEqual(shown(actionsFor({ state: "running", wave: 0, waves: [33, 100] })));
    const refreshes = async () => {
      const at = await page.evaluate(() => (globalThis as any).document.body.dataset.refreshed ?? "");
      await page.waitForFunction((before) => ((globalThis as any).document.body.dataset.refreshed ?? "") !== before, at, { timeout: 15_000 });
    };
    // Paused elsewhere (the CLI calls this API): the next refresh shows Resume, not Pause.
    await admin(`/admin/rollouts/${r.id}/pause`, "POST", {});
    await refreshes();
    expect(await buttons(page)).toEqual(shown(actionsFor({ state: "paused", wave: 0, waves: [33, 100] })));
    await admin(`/admin/rollouts/${r.id}/resume`, "POST", {});

    // spare-1, released in wave 1, fails to install version 5: the rollout's event links to it.
    const entry = { length: 0, hashes: { sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" }, custom: { version: "5", hardwareIds: ["amd64-linux"], tags: ["main"], docker_compose_apps: {} } };
    await admin("/admin/targets", "POST", { targets: { "amd64-linux-5": entry } });
    const v5 = { correlationId: "upd-5", targetName: "amd64-linux-5", version: "5" };
    await send(fleet.spare, gw.url, "/events", [event("EcuInstallationStarted", v5), event("EcuInstallationCompleted", { ...v5, success: false, details: "app shop: exited 1" })]);
    const link = page.locator(`.timeline a[href="/ui/devices/${fleet.spare.uuid}"]`);
    for (let i = 0; i < 6 && (await link.count()) === 0; i++) await refreshes();
    await expect(link.textContent()).resolves.toBe(fleet.spare.uuid);
    await ctx.close();
  }, 90_000);

  test("a viewer sees the rollout but no buttons, and the API refuses the action", async () => {
    const { ctx, page } = await signedIn(viewerToken);
    await goto(page, `${gw.url}/ui/rollouts/${rolloutId}`);
    await expect(page.locator("li[data-wave]").count()).resolves.toBe(2);
    await expect(page.getByRole("button", { name: "Cancel" }).count()).resolves.toBe(0);
    const csrf = await page.locator("input[name=_csrf]").first().getAttribute("value");
    const res = await page.request.post(`${gw.url}/ui/rollouts/${rolloutId}/cancel`, { form: { _csrf: csrf! } });
    expect(res.status()).toBe(403);
    expect((await admin<RolloutDetail>(`/admin/rollouts/${rolloutId}`)).state).toBe("running");
    await ctx.close();
  }, 60_000);
});
