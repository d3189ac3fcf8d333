/**
 * Input the gateway refuses, in a real browser: the page comes back with the form, the reason above
 * it and what was typed still in it (labels `novalue`, a 5,000-character value, 65 lines; a bad
 * tag; a bad query for a new group; a bad token; a list filter `label=a`), and nothing changes.
 * It used to be a page of only "The gateway refused this: …" at the POST's URL, the typing lost.
 * Such a page, at the POST's address, still refreshes itself from its own (a GET there is a 404).
 */
import { beforeAll, describe, expect, test } from "bun:test";
import type { Page } from "playwright-core";
import type { DeviceDetail, TokenList } from "../../lib/api/admin.ts";
import { gatewayAndBrowser, goto, signIn, submit } from "./_browser.ts";
import { makeFleet, type Fleet } from "./_fleet.ts";

const env = gatewayAndBrowser();
let fleet: Fleet;

const admin = async <T,>(path: string): Promise<T> => (await (await env.g.adminFetch(path)).json()) as T;

beforeAll(async () => {
  fleet = await makeFleet(env.g);
}, 120_000);

const alert = (page: Page) => page.getByRole("alert").textContent();

describe("refused input", () => {
  test("on a device's page: the page again, the reason above the form, the typed text kept, nothing changed", async () => {
    const { ctx, page } = await signIn(env.browser, env.g.url, env.g.adminToken);
    const uuid = fleet.good.uuid;
    await goto(page, `${env.g.url}/ui/devices/${uuid}`);
    const labels = page.getByLabel(/^Labels/);
    const long = `note=${"x".repeat(5000)}`;
    const lines = Array.from({ length: 65 }, (_, i) => `k${i}=v`).join("\n");
    for (const [typed, why] of [
      ["site=berlin\nnovalue", '"novalue" is not key=value (line 2; one label a line)'],
      [long, `Invalid value of label "note": longer than 128 characters`],
      [lines, `Device "${uuid}" would have 65 labels: at most 64 a device`],
    ] as const) {
      await labels.fill(typed);
      await submit(page, "Set labels");
      expect(await alert(page)).toContain(why);
      // The reason stands in the labels form, which holds what was typed; the other forms are there too.
      expect(await page.locator("form[action$='/labels'] [role=alert]").count()).toBe(1);
      expect(await labels.inputValue()).toBe(typed);
      expect(await page.getByRole("button", { name: "Set tags" }).count()).toBe(1);
      expect(await page.getByRole("link", { name: "← Devices" }).count()).toBe(1);
    }

    const tags = page.getByLabel("Tags (comma-separated)");
    await tags.fill("main, not a tag!");
    await submit(page, "Set tags");
    expect(await page.locator("form[action$='/tags'] [role=alert]").textContent()).toContain("The gateway refused this:");
    expect(await tags.inputValue()).toBe("main, not a tag!");
    // The labels field shows the device's labels again, not the refused text.
    expect(await labels.inputValue()).toBe("");

    const d = await admin<DeviceDetail>(`/admin/devices/${uuid}`);
    expect(d.tags).toEqual(["main"]);
    expect(d.labels).toEqual({});
    await ctx.close();
  }, 90_000);

  test("text typed into a refused labels field comes back as text: <, \" and </textarea> stay in the field", async () => {
    const { ctx, page } = await signIn(env.browser, env.g.url, env.g.adminToken);
    await goto(page, `${env.g.url}/ui/devices/${fleet.bad.uuid}`);
    const labels = page.getByLabel(/^Labels/);
    const typed = 'a=<b>"x" & y</textarea><p id="injected">in the page</p>\nnovalue';
    await labels.fill(typed);
    await submit(page, "Set labels");
    expect(await alert(page)).toContain('"novalue" is not key=value (line 2; one label a line)');
    expect(await labels.inputValue()).toBe(typed);
    expect(await page.locator("#injected").count()).toBe(0);
    expect(await page.getByRole("button", { name: "Set labels" }).count()).toBe(1);
    await ctx.close();
  }, 60_000);

  test("in the device list's filters: the filters again as given, the reason above them", async () => {
    const { ctx, page } = await signIn(env.browser, env.g.url, env.g.adminToken);
    const res = await goto(page, `${env.g.url}/ui/devices?label=a&hwid=amd64-linux`);
    expect(res?.status()).toBe(400);
    expect(await alert(page)).toContain("The gateway refused this:");
    expect(await page.getByLabel("Label", { exact: true }).inputValue()).toBe("a");
    expect(await page.getByLabel("Hardware id").inputValue()).toBe("amd64-linux");
    // Mended in place, the list comes.
    await page.getByLabel("Label", { exact: true }).fill("");
    await page.getByRole("button", { name: "Filter" }).click();
    await page.waitForURL((u) => !u.search.includes("label=a"));
    expect(await page.locator("tbody tr[data-uuid]").count()).toBe(3);
    await ctx.close();
  }, 60_000);

  test("creating a group or a token: the form again with what was typed, the reason above it", async () => {
    const { ctx, page } = await signIn(env.browser, env.g.url, env.g.adminToken);
    await goto(page, `${env.g.url}/ui/groups`);
    await page.getByLabel("Group name").fill("berlin");
    await page.getByLabel(/^Query/).fill("site=");
    await submit(page, "Create group");
    expect(await alert(page)).toContain("The gateway refused this:");
    expect(await page.getByLabel("Group name").inputValue()).toBe("berlin");
    expect(await page.getByLabel(/^Query/).inputValue()).toBe("site=");
    expect((await admin<{ groups: unknown[] }>("/admin/groups")).groups).toEqual([]);

    const before = await admin<TokenList>("/admin/tokens");
    await goto(page, `${env.g.url}/ui/tokens`);
    await page.getByLabel("Name").fill("line 7");
    await page.getByLabel("Tags (comma-separated)").fill("main, not a tag!");
    await page.getByLabel("Expires in").selectOption("7d");
    await submit(page, "Create registration token");
    expect(await alert(page)).toContain("The gateway refused this:");
    expect(await page.getByLabel("Name").inputValue()).toBe("line 7");
    expect(await page.getByLabel("Tags (comma-separated)").inputValue()).toBe("main, not a tag!");
    expect(await page.getByLabel("Expires in").inputValue()).toBe("7d");
    expect(await admin<TokenList>("/admin/tokens")).toEqual(before);
    await ctx.close();
  }, 60_000);

  test("a page answering a refused form, at the form's POST address, refreshes from its own: a change made elsewhere shows", async () => {
    const call = async (method: string, path: string, body: unknown = {}) => {
      const res = await env.g.adminFetch(path, { method, headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
      expect(res.ok).toBe(true);
      return (await res.json()) as { id: string };
    };
    const { ctx, page } = await signIn(env.browser, env.g.url, env.g.adminToken);
    const uuid = fleet.spare.uuid;
    await goto(page, `${env.g.url}/ui/devices/${uuid}`);
    await page.getByLabel(/^Labels/).fill("oops");
    await submit(page, "Set labels");
    expect(page.url()).toBe(`${env.g.url}/ui/devices/${uuid}/labels`);
    expect(await alert(page)).toContain('"oops" is not key=value');
    await call("PUT", `/admin/devices/${uuid}/labels`, { set: { seen: "yes" } });
    // The next refresh, within 5 s of the page's load, shows the label set elsewhere.
    await page.locator("[data-labels]", { hasText: "seen=yes" }).waitFor({ timeout: 7_000 });

    const r = await call("POST", "/admin/rollouts", { target: "3", tag: "main", waves: [50, 100], soak: "1h" });
    await goto(page, `${env.g.url}/ui/rollouts/${r.id}`);
    // Focused, the buttons' region is not refreshed: the button stays Pause after the CLI pauses it.
    await page.getByRole("button", { name: "Pause" }).focus();
    await call("POST", `/admin/rollouts/${r.id}/pause`);
    await submit(page, "Pause");
    expect(page.url()).toBe(`${env.g.url}/ui/rollouts/${r.id}/pause`);
    expect(await alert(page)).toContain(`Cannot pause rollout "${r.id}": it is paused`);
    await call("POST", `/admin/rollouts/${r.id}/resume`);
    await page.locator("#rollout-actions button", { hasText: "Pause" }).waitFor({ timeout: 7_000 });
    await ctx.close();
  }, 60_000);
});
