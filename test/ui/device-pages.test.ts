/**
 * The device list's pages: `?page=` is a whole number from 1 to the last page; anything else
 * (0, abc, 1.5, a page past the last) shows the nearest page there is, with links only to pages
 * there are, and says how many there are, with a link to the last. Page 7 of 101 devices said
 * "301–300 of 101", no devices, and linked "Previous" to page 6; `abc` linked to page=NaN, `1.5`
 * showed devices 26–75 and linked to pages 0.5 and 2.5.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { registerDevice } from "../gateway/_register.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { dashboardClient, unescapeHtml } from "./_http.ts";
import { MAX_PAGE, PAGE_SIZE } from "../../gateway/ui/pages/devices.tsx";

let g: GatewayHandle;

beforeAll(async () => {
  g = await startGateway();
  for (let i = 0; i < 101; i += 20) await Promise.all(Array.from({ length: Math.min(20, 101 - i) }, () => registerDevice(g.url, g.adminToken, g.caPem)));
}, 120_000);

afterAll(async () => {
  await g?.stop();
}, 120_000);

/** What a page's list says of itself: its count line, the page it is and its page links. */
function pager(html: string) {
  const text = (s: string | undefined) => unescapeHtml((s ?? "").replace(/<[^>]+>/g, "")).trim();
  return {
    count: text(/<p class="muted" data-total="\d+">(.*?)<span title/s.exec(html)?.[1]),
    rows: (html.match(/<tr data-uuid=/g) ?? []).length,
    page: text(/<span data-page="\d+">(.*?)<\/span>/.exec(html)?.[1]),
    links: [...(/<nav class="pager"[^>]*>(.*?)<\/nav>/s.exec(html)?.[1] ?? "").matchAll(/<a href="([^"]*)">(.*?)<\/a>/g)].map((m) => `${text(m[2])} ${unescapeHtml(m[1]!)}`),
  };
}

describe("the device list's pages", () => {
  test("are whole numbers from 1 to the last: anything else shows the nearest page there is", async () => {
    const b = dashboardClient(g);
    expect((await b.signIn(g.adminToken)).status).toBe(303);
    const at = async (query: string) => {
      const res = await b.request(`/ui/devices${query}`);
      expect(res.status).toBe(200);
      return pager(res.html);
    };
    const first = { count: "1–50 of 101 devices", rows: 50, page: "Page 1 of 3", links: ["Next → /ui/devices?page=2", "Last » /ui/devices?page=3"] };
    const last = { count: "101–101 of 101 devices", rows: 1, page: "Page 3 of 3", links: ["« First /ui/devices", "← Previous /ui/devices?page=2"] };
    expect(await at("")).toEqual(first);
    for (const q of ["?page=0", "?page=abc", "?page=1.5", "?page=-2", "?page=1"]) expect({ q, ...(await at(q)) }).toEqual({ q, ...first });
    expect(await at("?page=2")).toEqual({
      count: "51–100 of 101 devices",
      rows: 50,
      page: "Page 2 of 3",
      links: ["« First /ui/devices", "← Previous /ui/devices", "Next → /ui/devices?page=3", "Last » /ui/devices?page=3"],
    });
    for (const q of ["?page=3", "?page=7", "?page=999", `?page=${"9".repeat(30)}`]) expect({ q, ...(await at(q)) }).toEqual({ q, ...last });
    // The filters stay in the links.
    expect((await at("?hwid=amd64-linux&page=999")).links).toEqual(["« First /ui/devices?hwid=amd64-linux", "← Previous /ui/devices?hwid=amd64-linux&page=2"]);
    // The furthest page asked of the API is its furthest offset's (MAX_FLEET_OFFSET): one more, it refuses.
    const offset = (page: number) => g.adminFetch(`/admin/fleet/devices?limit=${PAGE_SIZE}&offset=${(page - 1) * PAGE_SIZE}`);
    expect((await offset(MAX_PAGE)).status).toBe(200);
    expect((await offset(MAX_PAGE + 1)).status).toBe(400);
  }, 60_000);
});
