/**
 * Labels whose values hold commas, `=`, quotes, spaces or a line break, set with the CLI, then
 * the device page's labels field submitted as the page shows it (over HTTPS with the session
 * cookie, as a browser posts the form): the labels stay exactly as they were; the CLI and the
 * page print them unambiguously (`site="a,ring=canary"`). A field that would give a device more
 * labels than it may have is refused with the API's one message for that, however it goes over,
 * and by the API's one rule: a device left over the limit may come down through the field.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { SQLITE_DB_FILE } from "../../gateway/data-dir.ts";
import { openStore } from "../../gateway/store/open.ts";
import { registerDevice } from "../gateway/_register.ts";
import { startGateway, testDbKind, type GatewayHandle } from "../harness/gateway.ts";
import { dashboardClient, unescapeHtml } from "./_http.ts";
import { gatewayRun } from "../harness/cli.ts";

let g: GatewayHandle;

const cli = (...args: string[]) => gatewayRun(args);

beforeAll(async () => {
  g = await startGateway();
}, 120_000);

afterAll(async () => {
  await g?.stop();
}, 120_000);

const labelsOf = async (uuid: string) => ((await (await g.adminFetch(`/admin/devices/${uuid}`)).json()) as { labels: Record<string, string> }).labels;

describe("the device page's labels field", () => {
  test("submitted as shown, it keeps labels whose values hold commas, '=', quotes, spaces or a line break", async () => {
    const d = await registerDevice(g.url, g.adminToken, g.caPem);
    const set = cli("devices", "label", "--data", g.dataDir, d.uuid, "site=a,ring=canary", "room=berlin, 2", 'q=say "hi"', "pad= x ", "plain=v1");
    expect(set.err).toBe("");
    expect(set.code).toBe(0);
    // A value with a line break comes through the API (the CLI takes one as well).
    const res = await g.adminFetch(`/admin/devices/${d.uuid}/labels`, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ set: { note: "two\nlines" } }) });
    expect(res.status).toBe(200);
    const before = await labelsOf(d.uuid);
    expect(before).toEqual({ site: "a,ring=canary", room: "berlin, 2", q: 'say "hi"', pad: " x ", plain: "v1", note: "two\nlines" });

    // What the CLI prints says where each value starts and ends.
    const show = cli("devices", "show", "--data", g.dataDir, d.uuid);
    expect(show.code).toBe(0);
    expect(show.out).toContain(`labels:      note="two\\nlines", pad=" x ", plain=v1, q="say \\"hi\\"", room="berlin, 2", site="a,ring=canary"`);

    const b = dashboardClient(g);
    expect((await b.signIn(g.adminToken)).status).toBe(303);
    const page = await b.request(`/ui/devices/${d.uuid}`);
    expect(page.status).toBe(200);
    expect(unescapeHtml(/<dd data-labels[^>]*>(.*?)<\/dd>/s.exec(page.html)![1]!)).toBe(`note="two\\nlines", pad=" x ", plain=v1, q="say \\"hi\\"", room="berlin, 2", site="a,ring=canary"`);
    const field = unescapeHtml(/<textarea name="labels"[^>]*>(.*?)<\/textarea>/s.exec(page.html)![1]!);
    expect(field).toBe(['pad= x ', "plain=v1", 'q=say "hi"', "room=berlin, 2", "site=a,ring=canary"].join("\n"));
    expect(page.html).toContain("data-labels-kept");
    const csrf = b.csrfOf(page.html);

    // A browser posts a textarea's line breaks as CRLF.
    const post = await b.request(`/ui/devices/${d.uuid}/labels`, { method: "POST", body: new URLSearchParams({ _csrf: csrf, labels: field.replace(/\n/g, "\r\n") }) });
    expect(post.status).toBe(303);
    expect(await labelsOf(d.uuid)).toEqual(before);

    // A label left out is removed; the one with a line break stays unless a line names it.
    const fewer = await b.request(`/ui/devices/${d.uuid}/labels`, { method: "POST", body: new URLSearchParams({ _csrf: csrf, labels: "room=berlin, 2\r\nsite=b" }) });
    expect(fewer.status).toBe(303);
    expect(await labelsOf(d.uuid)).toEqual({ room: "berlin, 2", site: "b", note: "two\nlines" });
  }, 60_000);

  test("more labels than a device may have are refused with one message, however the field goes over", async () => {
    const b = dashboardClient(g);
    expect((await b.signIn(g.adminToken)).status).toBe(303);
    const alertOf = (html: string) => unescapeHtml(/role="alert">(.*?)<\/p>/s.exec(html)?.[1] ?? "");
    const lines = (n: number) => Array.from({ length: n }, (_, i) => `k${i}=v`).join("\r\n");
    const post = async (uuid: string, labels: string) => {
      const csrf = b.csrfOf((await b.request(`/ui/devices/${uuid}`)).html);
      return b.request(`/ui/devices/${uuid}/labels`, { method: "POST", body: new URLSearchParams({ _csrf: csrf, labels }) });
    };

    // 65 lines: more than one request may set.
    const plain = await registerDevice(g.url, g.adminToken, g.caPem);
    const over = await post(plain.uuid, lines(65));
    expect(over.status).toBe(400);
    expect(alertOf(over.html)).toContain(`Device "${plain.uuid}" would have 65 labels: at most 64 a device (it has 0; remove some first)`);
    expect(await labelsOf(plain.uuid)).toEqual({});

    // 64 lines beside a label the field keeps (a value with a line break): the device would have 65.
    const kept = await registerDevice(g.url, g.adminToken, g.caPem);
    const res = await g.adminFetch(`/admin/devices/${kept.uuid}/labels`, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ set: { note: "two\nlines" } }) });
    expect(res.status).toBe(200);
    const also = await post(kept.uuid, lines(64));
    expect(also.status).toBe(400);
    expect(alertOf(also.html)).toContain(`Device "${kept.uuid}" would have 65 labels: at most 64 a device (it has 1; remove some first)`);
    // 66 lines beside it: counted the same way.
    expect(alertOf((await post(kept.uuid, lines(66))).html)).toContain(`would have 67 labels: at most 64 a device (it has 1; remove some first)`);
    expect(await labelsOf(kept.uuid)).toEqual({ note: "two\nlines" });

    // A device over the limit, as an older gateway could leave it (66 labels): the field may take it
    // down (65 lines), as the API may, but not further up (67), by the store's one rule.
    const older = await registerDevice(g.url, g.adminToken, g.caPem);
    // The harness keeps a PostgreSQL gateway's database URL in the data dir's .harness-db.
    const store = await openStore(testDbKind() === "postgres" ? readFileSync(join(g.dataDir, ".harness-db"), "utf8").trim() : join(g.dataDir, SQLITE_DB_FILE));
    await store.setDeviceLabels(older.uuid, Object.fromEntries(Array.from({ length: 66 }, (_, i) => [`k${i}`, "v"])), []);
    await store.close();
    expect(alertOf((await post(older.uuid, lines(67))).html)).toContain(`Device "${older.uuid}" would have 67 labels: at most 64 a device (it has 66; remove some first)`);
    expect(Object.keys(await labelsOf(older.uuid))).toHaveLength(66);
    expect((await post(older.uuid, lines(65))).status).toBe(303);
    expect(Object.keys(await labelsOf(older.uuid))).toHaveLength(65);
  }, 60_000);
});
